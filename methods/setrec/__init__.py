"""SETRec (Lin et al., SIGIR 2025, "Order-agnostic Identifier for Large Language Model-based
Generative Recommendation", arXiv 2502.10833).

Each item is a *set* of continuous tokens, one per information dimension: a CF token and
``n_sem`` semantic tokens. A T5 reads the history as sets that share a position and writes
all tokens of the next item at once, one learned query per dimension.

- ``cf_tokenizer``: SASRec item embeddings from the training split (cached, frozen).
- ``semantic_tokenizer``: the autoencoder from text embeddings to semantic tokens.
- ``model``: encoder input with per-item shared positions, query-guided decoder, loss.
- ``method``: the plugin (training through the engine's loop, beta on validation, scoring).
"""
