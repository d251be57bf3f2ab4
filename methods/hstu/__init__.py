"""HSTU (Zhai et al., "Actions Speak Louder than Words: Trillion-Parameter Sequential
Transducers for Generative Recommendations", ICML 2024, arXiv 2402.17152).

- ``model``: the HSTU block (pointwise aggregated attention, relative position and time
  bias, gating by U), the stack and its sampled or full softmax loss.
- ``method``: the plugin (training through the engine's loop, scoring over all items).
"""
