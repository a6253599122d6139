"""Limits a file or a configuration may not exceed: one home each, read by the code that writes
and the code that reads (and by the entry points' rule tables, so a configuration beyond one is
refused before any work starts)."""

MAX_MEMBERS = 64  # ensemble members a manifest may list, and train.py ensemble.members may ask for
# posterior samples one predict call may return (1.2 GB of float64 parameter triples)
MAX_SAMPLES = 50_000_000
MAX_PLOTS = 200  # corner plots one predict.py call may draw (one figure per spectrum)
