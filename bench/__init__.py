"""`make bench`: the pipelines scripts/bench.py measures and what they share."""
