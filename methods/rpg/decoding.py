"""RPG's graph-constrained decoding (Hou et al., KDD 2025, arXiv 2506.05781).

**Decoding graph.** Two items are as similar as their semantic IDs: the mean over digits of
``(1 + cos(e_{d,a}, e_{d,b})) / 2`` for their tokens ``a, b`` of digit ``d``, with the trained
token embeddings. Each item is linked to its ``n_edges`` most similar items (itself
included). The graph is built once per trained model.

**Propagation.** ``num_beams`` items are drawn at random; for ``propagation_steps`` rounds the
beam is replaced by the ``num_beams`` best-scoring items among the current beam and its
neighbours, an item's score being the mean log-probability of its tokens. Only items are
ever visited, so every output is a valid ID; scoring touches about
``num_beams * n_edges * steps`` items per user instead of the whole catalogue.
"""

from __future__ import annotations

import torch


def item_scores(log_probabilities: torch.Tensor, item_codes: torch.Tensor) -> torch.Tensor:
    """Mean token log-probability of items: ``log_probabilities`` ``[B, m * K]`` and
    ``item_codes`` ``[B, N, m]`` (or ``[N, m]`` for the same items in every row) -> ``[B, N]``."""
    if item_codes.dim() == 2:
        item_codes = item_codes.expand(len(log_probabilities), -1, -1)
    batch, n, digits = item_codes.shape
    gathered = torch.gather(log_probabilities, 1, item_codes.reshape(batch, n * digits))
    return gathered.reshape(batch, n, digits).mean(dim=2)


def exhaustive_ranking(log_probabilities: torch.Tensor, item_codes: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best items of the whole catalogue (what the authors' validation ranks with)."""
    scores = torch.zeros(len(log_probabilities), len(item_codes), device=log_probabilities.device)
    for digit in range(item_codes.shape[1]):  # one gather per digit: never a [B, N, m] tensor
        scores += log_probabilities[:, item_codes[:, digit]]
    return scores.topk(min(k, len(item_codes)), dim=1).indices


def decoding_graph(token_embeddings: torch.Tensor, codes: torch.Tensor, n_edges: int,
                   chunk_size: int = 1024) -> torch.Tensor:
    """``[n_items, n_edges]``: each item's most similar items by semantic ID (row order: most
    similar first). ``token_embeddings`` ``[m, K, d]`` L2-normalised; ``codes`` ``[n, m]``."""
    n_items, digits = codes.shape
    similarity_tables = 0.5 * (1.0 + token_embeddings @ token_embeddings.transpose(1, 2))  # [m, K, K]
    edges = min(n_edges, n_items)
    neighbours = []
    for start in range(0, n_items, chunk_size):
        rows = codes[start:start + chunk_size]
        similarity = torch.zeros(len(rows), n_items, device=codes.device)
        for digit in range(digits):
            similarity += similarity_tables[digit][rows[:, digit]][:, codes[:, digit]]
        neighbours.append(similarity.topk(edges, dim=1).indices)  # the mean's 1/m does not change the order
    return torch.cat(neighbours)


def graph_search(log_probabilities: torch.Tensor, item_codes: torch.Tensor, graph: torch.Tensor, num_beams: int,
                 steps: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``[B, k]`` items, best first, found by propagation over ``graph`` from random beams."""
    batch, n_items = len(log_probabilities), len(item_codes)
    beams_wanted = min(num_beams, n_items)
    # Distinct random starting items per user (the authors draw them uniformly).
    beams = torch.rand(batch, n_items, generator=generator).argsort(dim=1)[:, :beams_wanted].to(graph.device)
    scores = item_scores(log_probabilities, item_codes[beams])
    for _ in range(steps):
        candidates = torch.cat([beams, graph[beams].reshape(batch, -1)], dim=1)
        candidates, _ = candidates.sort(dim=1)
        repeated = torch.zeros_like(candidates, dtype=torch.bool)
        repeated[:, 1:] = candidates[:, 1:] == candidates[:, :-1]
        candidate_scores = item_scores(log_probabilities, item_codes[candidates]).masked_fill(repeated, float("-inf"))
        scores, chosen = candidate_scores.topk(beams_wanted, dim=1)
        beams = torch.gather(candidates, 1, chosen)
    order = scores.argsort(dim=1, descending=True)
    return torch.gather(beams, 1, order)[:, :k]
