"""The item trie: edges, leaves, masks and transitions against the item sequences."""

from __future__ import annotations

import random

import pytest
import torch

from bench.engine.trie import ItemTrie
from bench.errors import BenchError

EOS, PAD = 1, 0


def walk(trie: ItemTrie, sequence) -> int:
    node = torch.tensor([0])
    for token in sequence:
        node = trie.advance(node, torch.tensor([token]))
    return int(node)


def test_prefix_item_gets_its_own_leaf() -> None:
    trie = ItemTrie.build([[5, 6], [5, 6, 7], [8]], eos_token_id=EOS, pad_token_id=PAD)
    assert int(trie.items(torch.tensor([walk(trie, [5, 6, EOS])]))) == 0
    assert int(trie.items(torch.tensor([walk(trie, [5, 6, 7, EOS])]))) == 1
    assert int(trie.items(torch.tensor([walk(trie, [8, EOS])]))) == 2
    # After [5, 6] both EOS (item 0 ends) and 7 (item 1 goes on) are allowed.
    mask = trie.allowed_mask(torch.tensor([walk(trie, [5, 6])]), vocab_size=10)
    assert mask[0].nonzero().flatten().tolist() == [EOS, 7]
    assert trie.max_depth == 4
    assert trie.n_items == 3


def test_inner_node_and_missing_edge() -> None:
    trie = ItemTrie.build([[5, 6], [5, 7]], eos_token_id=EOS, pad_token_id=PAD)
    assert int(trie.items(torch.tensor([walk(trie, [5])]))) == -1
    assert walk(trie, [6]) == -1  # no ID starts with 6
    assert walk(trie, [5, 6, EOS, 5]) == -1  # nothing follows a leaf
    assert trie.allowed_mask(torch.tensor([-1]), vocab_size=10).sum() == 0


def test_trailing_pad_and_eos_are_stripped() -> None:
    trie = ItemTrie.build([[5, 6, EOS, PAD, PAD], [7]], eos_token_id=EOS, pad_token_id=PAD)
    assert trie.item_sequences == ((5, 6), (7,))
    assert int(trie.items(torch.tensor([walk(trie, [5, 6, EOS])]))) == 0


@pytest.mark.parametrize(
    "sequences, message",
    [
        ([[5, 6], [7], [5, 6]], "items 0 and 2"),
        ([[5, 6], [PAD]], "item 1 has an empty"),
        ([[5, EOS, 6]], "item 0 has token 1"),
        ([], "no item sequences"),
    ],
)
def test_bad_sequences_are_refused(sequences, message) -> None:
    with pytest.raises(BenchError, match=message):
        ItemTrie.build(sequences, eos_token_id=EOS, pad_token_id=PAD)


def test_vocabulary_smaller_than_trie_is_refused() -> None:
    trie = ItemTrie.build([[5, 12]], eos_token_id=EOS, pad_token_id=PAD)
    with pytest.raises(BenchError, match="token 12"):
        trie.allowed_mask(torch.tensor([0]), vocab_size=10)


def test_random_trie_matches_the_set_of_prefixes() -> None:
    rng = random.Random(3)
    sequences = list({tuple(rng.randrange(2, 20) for _ in range(rng.randint(1, 5))) for _ in range(200)})
    trie = ItemTrie.build(sequences, eos_token_id=EOS, pad_token_id=PAD)
    full = [tuple(sequence) + (EOS,) for sequence in sequences]
    prefixes = sorted({sequence[:length] for sequence in full for length in range(len(sequence))})
    # Expected next tokens of every prefix, by brute force over all the IDs.
    expected = torch.zeros(len(prefixes), 20, dtype=torch.bool)
    for row, prefix in enumerate(prefixes):
        for sequence in full:
            if sequence[: len(prefix)] == prefix:
                expected[row, sequence[len(prefix)]] = True
    nodes = torch.tensor([walk(trie, prefix) for prefix in prefixes])
    assert (nodes >= 0).all()
    assert torch.equal(trie.allowed_mask(nodes, vocab_size=20), expected)
    # Every full ID (with EOS) ends at the leaf of its own item.
    leaves = torch.tensor([walk(trie, sequence) for sequence in full])
    assert trie.items(leaves).tolist() == list(range(len(sequences)))
    # Batched advance over every (prefix, token) pair agrees with the mask.
    pair_nodes = nodes.repeat_interleave(20)
    pair_tokens = torch.arange(20).repeat(len(prefixes))
    reached = trie.advance(pair_nodes, pair_tokens).view(len(prefixes), 20)
    assert torch.equal(reached >= 0, expected)
    # The edge list gives the same children as advance, row by row.
    rows, tokens, children = trie.edges(nodes)
    assert torch.equal(rows, rows.sort().values)
    assert torch.equal(children, reached[rows, tokens])
