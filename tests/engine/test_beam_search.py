"""Constrained beam search against brute-force teacher-forced scoring of every item."""

from __future__ import annotations

import random

import pytest
import torch

from bench.engine.beam_search import constrained_beam_search
from bench.engine.trie import ItemTrie
from bench.errors import BenchError
from bench.runtime import cpu_runtime

from tests.engine.conftest import EOS, PAD, VOCAB, tiny_t5




def random_items(rng: random.Random, n_items: int = 15) -> list[list[int]]:
    items: list[tuple[int, ...]] = []
    while len(items) < n_items:
        candidate = tuple(rng.randrange(2, VOCAB) for _ in range(rng.randint(1, 4)))
        if candidate not in items:
            items.append(candidate)
    # One ID is a prefix of another: only EOS tells them apart.
    items[3] = items[7] + (rng.randrange(2, VOCAB),)
    assert len(set(items)) == n_items
    return [list(item) for item in items]


def random_prompts(rng: random.Random, n_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [rng.randint(2, 9) for _ in range(n_users)]
    input_ids = torch.full((n_users, max(lengths)), PAD)
    attention_mask = torch.zeros(n_users, max(lengths), dtype=torch.long)
    for user, length in enumerate(lengths):
        input_ids[user, :length] = torch.tensor([rng.randrange(2, VOCAB) for _ in range(length)])
        attention_mask[user, :length] = 1
    return input_ids, attention_mask


def teacher_forced_scores(model, input_ids, attention_mask, items) -> torch.Tensor:
    """Sum of token log-probs of every item's ID with EOS, for every user: [n_users, n_items]."""
    longest = max(len(item) for item in items) + 1
    labels = torch.full((len(items), longest), -100)
    for index, item in enumerate(items):
        labels[index, : len(item) + 1] = torch.tensor(item + [EOS])
    decoder_input_ids = torch.cat([torch.full((len(items), 1), PAD), labels[:, :-1].clamp(min=PAD)], dim=1)
    scores = []
    with torch.no_grad():
        for user in range(input_ids.shape[0]):
            logits = model(
                input_ids=input_ids[user : user + 1].expand(len(items), -1),
                attention_mask=attention_mask[user : user + 1].expand(len(items), -1),
                decoder_input_ids=decoder_input_ids,
            ).logits
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            token_scores = log_probs.gather(2, labels.clamp(min=0)[:, :, None]).squeeze(2)
            scores.append(torch.where(labels >= 0, token_scores, 0.0).sum(dim=1))
    return torch.stack(scores)


def brute_force_ranking(scores: torch.Tensor) -> torch.Tensor:
    """Items by score, ties by the smaller index (stable sort of an index-ordered row)."""
    return scores.argsort(dim=1, descending=True, stable=True)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_full_width_beam_equals_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    model = tiny_t5(seed)
    items = random_items(rng)
    trie = ItemTrie.build(items, eos_token_id=EOS, pad_token_id=PAD)
    input_ids, attention_mask = random_prompts(rng, n_users=4)

    found_items, found_scores = constrained_beam_search(
        model, input_ids, attention_mask, trie, beam_width=len(items), num_results=len(items), runtime=cpu_runtime(),
    )
    expected_scores = teacher_forced_scores(model, input_ids, attention_mask, items)
    expected_items = brute_force_ranking(expected_scores)
    assert torch.equal(found_items, expected_items)
    torch.testing.assert_close(found_scores, expected_scores.gather(1, expected_items), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_narrow_beam_returns_true_scores_of_distinct_items(seed: int) -> None:
    rng = random.Random(seed)
    model = tiny_t5(seed)
    items = random_items(rng)
    trie = ItemTrie.build(items, eos_token_id=EOS, pad_token_id=PAD)
    input_ids, attention_mask = random_prompts(rng, n_users=5)

    found_items, found_scores = constrained_beam_search(
        model, input_ids, attention_mask, trie, beam_width=4, num_results=3, runtime=cpu_runtime(),
    )
    expected_scores = teacher_forced_scores(model, input_ids, attention_mask, items)
    assert (found_items >= 0).all()
    for row in found_items.tolist():
        assert len(set(row)) == len(row)
    torch.testing.assert_close(found_scores, expected_scores.gather(1, found_items), atol=1e-4, rtol=1e-4)
    assert (found_scores[:, :-1] >= found_scores[:, 1:]).all()
    # A beam search never finds a better item than the exhaustive best.
    assert (found_scores[:, 0] <= expected_scores.max(dim=1).values + 1e-5).all()


def test_more_results_than_beams_is_refused() -> None:
    trie = ItemTrie.build([[5], [6]], eos_token_id=EOS, pad_token_id=PAD)
    input_ids, attention_mask = random_prompts(random.Random(0), n_users=1)
    with pytest.raises(BenchError, match="num_results=3, beam_width=2"):
        constrained_beam_search(tiny_t5(0), input_ids, attention_mask, trie, beam_width=2, num_results=3,
                                runtime=cpu_runtime())


def test_short_result_lists_are_padded() -> None:
    model = tiny_t5(0)
    items = [[5, 6], [5, 6, 7], [9]]
    trie = ItemTrie.build(items, eos_token_id=EOS, pad_token_id=PAD)
    input_ids, attention_mask = random_prompts(random.Random(0), n_users=2)
    found_items, found_scores = constrained_beam_search(
        model, input_ids, attention_mask, trie, beam_width=6, num_results=6, runtime=cpu_runtime(),
    )
    assert found_items.shape == (2, 6)
    assert sorted(found_items[:, :3].flatten().tolist()) == [0, 0, 1, 1, 2, 2]
    assert (found_items[:, 3:] == -1).all()
    assert torch.isneginf(found_scores[:, 3:]).all()
    assert torch.isfinite(found_scores[:, :3]).all()


def test_batched_rows_equal_single_rows_and_model_settings_are_restored() -> None:
    rng = random.Random(7)
    model = tiny_t5(7)
    model.train()
    trie = ItemTrie.build(random_items(rng), eos_token_id=EOS, pad_token_id=PAD)
    input_ids, attention_mask = random_prompts(rng, n_users=4)
    implementation = model.config._attn_implementation
    batched_items, batched_scores = constrained_beam_search(model, input_ids, attention_mask, trie, 4, 3,
                                                            runtime=cpu_runtime())
    assert model.training
    assert model.config._attn_implementation == implementation
    for user in range(4):
        length = int(attention_mask[user].sum())
        single_items, single_scores = constrained_beam_search(
            model, input_ids[user : user + 1, :length], attention_mask[user : user + 1, :length], trie, 4, 3,
            runtime=cpu_runtime(),
        )
        assert torch.equal(single_items[0], batched_items[user])
        torch.testing.assert_close(single_scores[0], batched_scores[user], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", [20, 21])
def test_restricted_trie_ranks_its_items_as_brute_force_over_them(seed: int) -> None:
    """Within-group ranking (SETRec's warm/cold protocol): the beam search over the trie of a
    subset returns exactly that subset, ordered by the model's true scores of its items."""
    rng = random.Random(seed)
    model = tiny_t5(seed)
    items = random_items(rng)
    allowed = [rng.random() < 0.5 for _ in items]
    allowed[3] = allowed[7] = True  # keep the prefix pair: EOS must still tell them apart
    trie = ItemTrie.build(items, eos_token_id=EOS, pad_token_id=PAD)
    subset = trie.restricted(allowed)
    assert subset is trie.restricted(list(allowed))  # built once per mask
    kept = torch.tensor([item for item, keep in enumerate(allowed) if keep])
    input_ids, attention_mask = random_prompts(rng, n_users=3)

    found_items, _ = constrained_beam_search(model, input_ids, attention_mask, subset,
                                             beam_width=len(kept), num_results=len(kept), runtime=cpu_runtime())
    expected_scores = teacher_forced_scores(model, input_ids, attention_mask, items)[:, kept]
    assert torch.equal(found_items, kept[brute_force_ranking(expected_scores)])
    with pytest.raises(BenchError, match="a mask over 15 items"):
        trie.restricted([True] * 3)


def test_a_transformers_without_the_cache_argument_is_refused_in_one_line() -> None:
    from bench.engine.beam_search import IncrementalDecoder

    class OlderT5(torch.nn.Module):  # transformers 5.17's T5: the decoder cache is `past_key_values`
        def forward(self, input_ids=None, past_key_values=None, use_cache=None):
            raise AssertionError("never called")

    with pytest.raises(BenchError, match=r"needs transformers>=5\.25"):
        IncrementalDecoder(OlderT5(), torch.zeros((1, 2), dtype=torch.long), torch.ones((1, 2)), cpu_runtime())
