"""Weights: download with cache and hash check, safe loading, conversion from effdet and TensorFlow."""
