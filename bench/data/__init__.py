"""Datasets: cards, upstream formats, preparation cache, and the leave-one-out split."""
