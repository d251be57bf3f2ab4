"""RPG (Hou et al., "Generating Long Semantic IDs in Parallel for Recommendation", KDD 2025,
arXiv 2506.05781).

- ``quantizer``: long semantic IDs by OPQ of item text embeddings, unique per item.
- ``model``: GPT-2 over items as mean token embeddings, one head per digit, multi-token
  prediction loss.
- ``decoding``: the decoding graph and graph-constrained propagation (and the exhaustive
  ranking the validation uses).
- ``method``: the plugin (training through the engine's loop, ranking).
"""
