"""One evaluator for every method: leave-one-out, full ranking, per-user metrics."""
