"""genrec-bench: one harness, one evaluator, for generative and sequential recommenders."""

__version__ = "0.1.0"
