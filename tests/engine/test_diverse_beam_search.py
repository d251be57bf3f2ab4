"""Diverse beam search: greedy without penalty, Hamming diversity, lengths, exclusions, batching."""

from __future__ import annotations

import random

import pytest
import torch

from bench.engine.diverse_beam_search import diverse_beam_search
from bench.errors import BenchError
from bench.runtime import cpu_runtime

from tests.engine.conftest import EOS, PAD, VOCAB, tiny_t5




def random_prompts(seed: int, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(seed)
    lengths = [rng.randint(2, 9) for _ in range(n_rows)]
    input_ids = torch.full((n_rows, max(lengths)), PAD)
    attention_mask = torch.zeros(n_rows, max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.tensor([rng.randrange(2, VOCAB) for _ in range(length)])
        attention_mask[row, :length] = 1
    return input_ids, attention_mask


def teacher_forced_score(model, input_ids, attention_mask, tokens: tuple[int, ...]) -> float:
    labels = torch.tensor([list(tokens) + [EOS]])
    decoder_input_ids = torch.cat([torch.tensor([[PAD]]), labels[:, :-1]], dim=1)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
    return float(torch.log_softmax(logits.float(), -1).gather(2, labels[:, :, None]).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_penalty_every_group_is_greedy(seed: int) -> None:
    model = tiny_t5(seed)
    input_ids, attention_mask = random_prompts(seed, n_rows=3)
    results = diverse_beam_search(
        model, input_ids, attention_mask, num_groups=4, diversity_penalty=0.0, min_length=2, max_length=6,
        runtime=cpu_runtime(),
    )
    greedy = model.generate(
        input_ids=input_ids, attention_mask=attention_mask, do_sample=False, num_beams=1,
        min_new_tokens=2, max_new_tokens=6, suppress_tokens=[PAD],
    )
    for row, row_results in enumerate(results):
        expected = tuple(token for token in greedy[row, 1:].tolist() if token not in (PAD, EOS))
        assert [tokens for tokens, _ in row_results] == [expected] * 4
        score = teacher_forced_score(model, input_ids[row : row + 1], attention_mask[row : row + 1], expected)
        assert row_results[0][1] == pytest.approx(score, abs=1e-4)


def test_large_penalty_makes_first_tokens_differ() -> None:
    model = tiny_t5(3)
    input_ids, attention_mask = random_prompts(3, n_rows=4)
    results = diverse_beam_search(model, input_ids, attention_mask, num_groups=10, diversity_penalty=1e4,
                                  runtime=cpu_runtime())
    for row_results in results:
        first_tokens = [tokens[0] for tokens, _ in row_results]
        assert len(set(first_tokens)) == 10


def test_second_group_pays_the_hamming_penalty() -> None:
    model = tiny_t5(4)
    input_ids, attention_mask = random_prompts(4, n_rows=2)
    with torch.no_grad():
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=torch.full((2, 1), PAD)
        ).logits[:, 0]
    first = torch.log_softmax(logits, -1)
    first[:, [PAD, EOS]] = -torch.inf  # pad is never written; EOS not before min_length
    for penalty in (0.05, 0.5, 5.0):
        results = diverse_beam_search(
            model, input_ids, attention_mask, num_groups=2, diversity_penalty=penalty, min_length=1, max_length=3,
            runtime=cpu_runtime(),
        )
        for row in range(2):
            group0_token = int(first[row].argmax())
            steered = first[row].clone()
            steered[group0_token] -= penalty
            assert results[row][0][0][0] == group0_token
            assert results[row][1][0][0] == int(steered.argmax())


def test_lengths_stay_in_range_and_scores_are_true_log_probs() -> None:
    model = tiny_t5(5)
    input_ids, attention_mask = random_prompts(5, n_rows=3)
    results = diverse_beam_search(
        model, input_ids, attention_mask, num_groups=3, beams_per_group=2, diversity_penalty=0.7,
        min_length=3, max_length=5, runtime=cpu_runtime(),
    )
    for row, row_results in enumerate(results):
        assert len(row_results) == 6
        for group in range(3):
            (first, first_score), (second, second_score) = row_results[2 * group : 2 * group + 2]
            assert first != second  # beams of one group are distinct sequences
            assert first_score >= second_score
        for tokens, score in row_results:
            assert 3 <= len(tokens) <= 5
            assert PAD not in tokens and EOS not in tokens
            expected = teacher_forced_score(model, input_ids[row : row + 1], attention_mask[row : row + 1], tokens)
            assert score == pytest.approx(expected, abs=1e-4)


def test_batched_equals_one_row_at_a_time() -> None:
    model = tiny_t5(6)
    input_ids, attention_mask = random_prompts(6, n_rows=4)
    options = dict(num_groups=3, beams_per_group=2, diversity_penalty=0.5, min_length=1, max_length=6)
    batched = diverse_beam_search(model, input_ids, attention_mask, **options, runtime=cpu_runtime())
    for row in range(4):
        length = int(attention_mask[row].sum())
        prompt, prompt_mask = input_ids[row : row + 1, :length], attention_mask[row : row + 1, :length]
        single = diverse_beam_search(model, prompt, prompt_mask, **options, runtime=cpu_runtime())
        assert [tokens for tokens, _ in single[0]] == [tokens for tokens, _ in batched[row]]
        assert [score for _, score in single[0]] == pytest.approx([score for _, score in batched[row]], abs=1e-4)


def test_excluded_ids_are_dropped_at_the_length_limit() -> None:
    model = tiny_t5(7)
    input_ids, attention_mask = random_prompts(7, n_rows=3)
    # Random tiny models never write EOS early, so every ID here ends at max_length.
    options = dict(num_groups=1, beams_per_group=3, diversity_penalty=0.0, min_length=1, max_length=3)
    plain = diverse_beam_search(model, input_ids, attention_mask, **options, runtime=cpu_runtime())
    taken = {plain[0][0][0], plain[1][1][0]}  # one shared "already taken" set
    results = diverse_beam_search(model, input_ids, attention_mask, exclude=[taken, taken, set()], **options,
                                  runtime=cpu_runtime())
    assert results[0] == [entry for entry in plain[0] if entry[0] not in taken]
    assert results[1] == [entry for entry in plain[1] if entry[0] not in taken]
    assert len(results[0]) == len(results[1]) == 2
    assert results[2] == plain[2]


def test_an_excluded_id_is_extended_instead() -> None:
    model = tiny_t5(8)
    input_ids, attention_mask = random_prompts(8, n_rows=1)
    options = dict(num_groups=1, diversity_penalty=0.0, min_length=2, max_length=6)
    [[(greedy, _)]] = diverse_beam_search(model, input_ids, attention_mask, **options, runtime=cpu_runtime())
    # Make EOS outscore the third greedy token, so the greedy ID now stops after two tokens.
    with torch.no_grad():
        model.shared.weight[EOS] = 3.0 * model.shared.weight[greedy[2]]
    [[(short, _)]] = diverse_beam_search(model, input_ids, attention_mask, **options, runtime=cpu_runtime())
    assert short == greedy[:2]
    [[(extended, _)]] = diverse_beam_search(model, input_ids, attention_mask, exclude=[{short}], **options,
                                            runtime=cpu_runtime())
    assert extended[:2] == short and len(extended) > 2


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(num_groups=0), "num_groups=0"),
        (dict(min_length=5, max_length=4), "min_length=5, max_length=4"),
        (dict(diversity_penalty=-1.0), "diversity_penalty=-1.0"),
        (dict(exclude=[set()]), "exclude has 1 entries for 2 prompts"),
    ],
)
def test_bad_arguments_are_refused(options, message) -> None:
    input_ids, attention_mask = random_prompts(0, n_rows=2)
    with pytest.raises(BenchError, match=message):
        diverse_beam_search(tiny_t5(0), input_ids, attention_mask, **options, runtime=cpu_runtime())
