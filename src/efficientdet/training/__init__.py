"""Training targets and losses: anchor assignment (:mod:`.assigner`) and the detection loss (:mod:`.losses`)."""
