"""TIGER (Rajput et al., NeurIPS 2023): RQ-VAE semantic IDs and a T5 trained from scratch on them."""
