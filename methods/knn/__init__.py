"""Neighbourhood baselines of the reality-check block: item-kNN and session-kNN."""
