"""Training and evaluation engine: fit, evaluate, checkpoints, optimisation, EMA, logging, distributed."""
