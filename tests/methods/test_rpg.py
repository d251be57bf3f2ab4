"""RPG: unique semantic IDs, the decoding graph against brute force, and graph-constrained
decoding that returns only catalogue items."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from methods.rpg.decoding import decoding_graph, exhaustive_ranking, graph_search, item_scores  # noqa: E402
from methods.rpg.quantizer import QuantizerSettings, make_unique, semantic_ids  # noqa: E402


def test_codes_are_unique_even_for_identical_texts():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(60, 32)).astype(np.float32)
    embeddings[10:20] = embeddings[3]  # eleven items share one text embedding
    settings = QuantizerSettings(n_digits=4, codebook_size=8, pca_dim=16, opq_iterations=2, kmeans_iterations=5)
    codes, report = semantic_ids(embeddings, np.arange(50), settings, seed=0)
    assert codes.shape == (60, 4) and codes.min() >= 0 and codes.max() < 8
    assert len({tuple(row) for row in codes.tolist()}) == 60
    assert report["items_moved_to_unique_codes"] >= 10
    assert report["before_deduplication"]["largest_collision_group"] >= 11


def test_make_unique_moves_the_cheapest_digit():
    codes = np.array([[0, 0], [0, 0], [1, 1]])
    distances = np.zeros((3, 2, 3))
    distances[1, 0] = [0.0, 5.0, 9.0]   # moving digit 0 of item 1 costs 5 or 9
    distances[1, 1] = [0.0, 0.5, 2.0]   # moving digit 1 to code 1 costs 0.5
    unique, moved = make_unique(codes, distances)
    assert moved == 1
    assert unique.tolist() == [[0, 0], [0, 1], [1, 1]]


def _random_model_outputs(n_items=40, digits=4, codebook=6, batch=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.nn.functional.normalize(torch.randn(digits, codebook, 8, generator=generator), dim=-1)
    numbers = torch.randperm(codebook ** digits, generator=generator)[:n_items]  # distinct, so codes are unique
    codes = torch.stack([numbers // codebook ** d % codebook for d in range(digits)], dim=1)
    flat = codes + torch.arange(digits) * codebook
    logits = torch.randn(batch, digits, codebook, generator=generator)
    log_probabilities = torch.log_softmax(logits, -1).reshape(batch, -1)
    return tokens, codes, flat, log_probabilities


def test_decoding_graph_matches_brute_force_similarity():
    tokens, codes, _, _ = _random_model_outputs()
    graph = decoding_graph(tokens, codes, n_edges=5, chunk_size=7)
    n, digits = codes.shape
    brute = torch.zeros(n, n)
    for a in range(n):
        for b in range(n):
            pairs = [0.5 * (1 + tokens[d, codes[a, d]] @ tokens[d, codes[b, d]]) for d in range(digits)]
            brute[a, b] = sum(pairs) / digits
    expected = brute.topk(5, dim=1)
    assert torch.equal(graph[:, 0], torch.arange(n))  # an item is its own nearest neighbour
    chosen = torch.gather(brute, 1, graph)
    assert torch.allclose(chosen, expected.values, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_graph_search_returns_distinct_catalogue_items(seed):
    tokens, codes, flat, log_probabilities = _random_model_outputs(seed=seed)
    graph = decoding_graph(tokens, codes, n_edges=4)
    ranked = graph_search(log_probabilities, flat, graph, num_beams=6, steps=3, k=5,
                          generator=torch.Generator().manual_seed(seed))
    assert ranked.shape == (5, 5)
    assert ranked.min() >= 0 and ranked.max() < len(codes)
    assert all(len(set(row)) == 5 for row in ranked.tolist())
    scores = item_scores(log_probabilities, flat[ranked])
    assert torch.all(scores[:, :-1] >= scores[:, 1:])  # best first


def test_a_beam_over_the_whole_catalogue_finds_the_exhaustive_ranking():
    tokens, codes, flat, log_probabilities = _random_model_outputs()
    graph = decoding_graph(tokens, codes, n_edges=3)
    ranked = graph_search(log_probabilities, flat, graph, num_beams=len(codes), steps=1, k=10,
                          generator=torch.Generator().manual_seed(0))
    exhaustive = exhaustive_ranking(log_probabilities, flat, 10)
    assert torch.equal(ranked, exhaustive)
