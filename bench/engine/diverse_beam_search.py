"""Diverse beam search (Vijayakumar et al., 2016), batched over many prompts.

transformers 5 removed group beam search, and IDGenRec's ID generator needs it: for each
item it writes several candidate textual IDs and keeps the first one not taken yet
(IDGenRec, Alg. 1). The beams are split into ``num_groups`` groups that take each decoding
step in order; group ``g`` scores a token by its log-probability minus
``diversity_penalty`` times the number of times the earlier groups chose that token at
this step (the paper's Hamming diversity, with its per-step augmented objective).
Unlike transformers 4's group beam search, the penalty steers the choice but is not
carried into a beam's running score, and a beam that wrote EOS keeps its slot in its
group; with one beam per group (IDGenRec's setting) both choose the same tokens.

Decoding is unconstrained over the vocabulary except for: no EOS before ``min_length``
tokens, EOS forced after ``max_length`` tokens, no pad token inside an ID, and optionally
no EOS where the sequence so far is one of the row's ``exclude`` sequences.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Collection, Sequence

import torch

from bench.engine.beam_search import IncrementalDecoder, beams_share_prompt_attention
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.runtime import Runtime

# Multipliers of the 64-bit rolling hash used to test "is this prefix excluded" for all
# beams at once; a false match needs two sequences with equal 64-bit hashes.
_HASH_MULTIPLIER = 0x100000001B3
_SET_MULTIPLIER = 0x9E3779B97F4A7C15 - (1 << 64)


def diverse_beam_search(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_groups: int = 10,
    beams_per_group: int = 1,
    diversity_penalty: float = 1.0,
    min_length: int = 1,
    max_length: int = 10,
    exclude: Sequence[Collection[Sequence[int]]] | None = None,
    *,
    runtime: "Runtime",
) -> list[list[tuple[tuple[int, ...], float]]]:
    """Per prompt, ``num_groups * beams_per_group`` generated token sequences.

    Each entry is ``(tokens, log_prob)``: the ID tokens without EOS, and the model's total
    log-probability of those tokens followed by EOS (the diversity penalty steers the
    search but is not part of the returned score). Entries are ordered by group, and by
    score within a group. Groups may return the same sequence; the caller deduplicates.
    ``exclude[row]`` holds token sequences that row may not end with EOS on.
    """
    _check_arguments(input_ids, num_groups, beams_per_group, diversity_penalty, min_length, max_length, exclude)
    n_rows = input_ids.shape[0]
    if n_rows == 0:
        return []
    groups, width = num_groups, beams_per_group
    pad, eos = model.config.pad_token_id, model.config.eos_token_id

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), beams_share_prompt_attention(model):
            decoder = IncrementalDecoder(model, input_ids, attention_mask, runtime)
            first = torch.log_softmax(decoder.start(), dim=-1)
            # The search state [rows, groups, beams, vocab] stays on the model's device.
            device = decoder.device
            vocab_size = first.shape[-1]
            log_probs = first[:, None, None, :].expand(n_rows, groups, width, vocab_size)
            # Only beam 0 of each group is live at first, so a group's beams split from it
            # instead of all picking the same first token.
            scores = torch.full((n_rows, groups, width), -torch.inf, device=device)
            scores[:, :, 0] = 0.0
            finished = torch.zeros(n_rows, groups, width, dtype=torch.bool, device=device)
            hashes = torch.zeros(n_rows, groups, width, dtype=torch.long, device=device)
            history = torch.zeros(n_rows, groups, width, 0, dtype=torch.long, device=device)
            excluded_keys, row_sets = decoder.runtime.to_device(_excluded_keys(exclude, n_rows))
            # Cache row of every beam's parent: one row per prompt after start(), then
            # groups * width rows per prompt.
            source_offset = torch.arange(n_rows, device=device)[:, None] * (groups * width)
            for step in range(max_length + 1):
                counts = torch.zeros(n_rows, vocab_size, device=device)
                step_scores, step_parents, step_tokens = [], [], []
                for group in range(groups):
                    candidates = scores[:, group, :, None] + log_probs[:, group]
                    candidates = _apply_rules(
                        candidates, finished[:, group], scores[:, group], hashes[:, group], step,
                        min_length, max_length, pad, eos, excluded_keys, row_sets,
                    )
                    # Hamming diversity: penalise the tokens earlier groups chose at this step.
                    steered = candidates - diversity_penalty * counts[:, None, :]
                    _, flat = steered.view(n_rows, -1).topk(width, dim=1)
                    step_scores.append(candidates.view(n_rows, -1).gather(1, flat))
                    step_parents.append(group * width + flat // vocab_size)
                    step_tokens.append(flat % vocab_size)
                    chosen = step_tokens[-1]
                    counts.scatter_add_(1, chosen, (chosen != pad).float())
                parents = torch.stack(step_parents, 1)  # [rows, groups, width], beam within the row
                tokens = torch.stack(step_tokens, 1)
                scores = torch.stack(step_scores, 1)
                flat_parents = parents.view(n_rows, -1)
                was_finished = finished.view(n_rows, -1).gather(1, flat_parents).view_as(parents)
                finished = was_finished | (tokens == eos)
                grows = (tokens != pad) & (tokens != eos)
                parent_hashes = hashes.view(n_rows, -1).gather(1, flat_parents).view_as(parents)
                hashes = torch.where(grows, parent_hashes * _HASH_MULTIPLIER + tokens + 1, parent_hashes)
                history = torch.cat(
                    [_gather_beams(history, flat_parents), torch.where(grows, tokens, pad)[..., None]], dim=-1
                )
                if bool(finished.all()):
                    break
                if step == 0:
                    source_rows = torch.arange(n_rows, device=device).repeat_interleave(groups * width)
                else:
                    source_rows = (source_offset + flat_parents).reshape(-1)
                logits = decoder.step(tokens.view(n_rows, -1), source_rows.view(n_rows, -1))
                log_probs = torch.log_softmax(logits, dim=-1).view(n_rows, groups, width, vocab_size)
    finally:
        model.train(was_training)
    return _to_lists(history, scores, pad)


def _apply_rules(
    candidates, finished, scores, hashes, step, min_length, max_length, pad, eos, excluded_keys, row_sets
) -> torch.Tensor:
    """Length limits, no pad inside an ID, excluded IDs; a finished beam may only stay."""
    candidates = candidates.clone()
    candidates[:, :, pad] = -torch.inf
    if step < min_length:
        candidates[:, :, eos] = -torch.inf
    if step == max_length:
        eos_scores = candidates[:, :, eos].clone()
        candidates.fill_(-torch.inf)
        candidates[:, :, eos] = eos_scores
    if excluded_keys is not None:
        blocked = _is_excluded(hashes, row_sets, excluded_keys)
        candidates[:, :, eos] = candidates[:, :, eos].masked_fill(blocked, -torch.inf)
    # A finished beam keeps its score through a pad "token" that adds nothing.
    candidates[finished] = -torch.inf
    stay = candidates[:, :, pad]
    candidates[:, :, pad] = torch.where(finished, scores, stay)
    return candidates


def _gather_beams(history: torch.Tensor, flat_parents: torch.Tensor) -> torch.Tensor:
    n_rows, groups, width, length = history.shape
    index = flat_parents[:, :, None].expand(-1, -1, length)
    return history.view(n_rows, groups * width, length).gather(1, index).view(n_rows, groups, width, length)


def _sequence_hashes(sequences: list[Sequence[int]]) -> torch.Tensor:
    """The rolling hash of each sequence, with the same tensor arithmetic as the search."""
    longest = max((len(sequence) for sequence in sequences), default=0)
    hashes = torch.zeros(len(sequences), dtype=torch.long)
    tokens = torch.full((len(sequences), longest), -1, dtype=torch.long)
    for index, sequence in enumerate(sequences):
        tokens[index, : len(sequence)] = torch.tensor(list(sequence), dtype=torch.long)
    for position in range(longest):
        present = tokens[:, position] >= 0
        hashes = torch.where(present, hashes * _HASH_MULTIPLIER + tokens[:, position] + 1, hashes)
    return hashes


def _excluded_keys(exclude, n_rows: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Sorted keys (set number, sequence hash) and each row's set number.

    Rows passing the same collection object share its keys, so one global "IDs already
    taken" set costs one hashing pass, not one per row.
    """
    if exclude is None:
        return None, None
    set_numbers: dict[int, int] = {}
    row_sets, all_keys = [], []
    for collection in exclude:
        number = set_numbers.get(id(collection))
        if number is None:
            number = set_numbers[id(collection)] = len(set_numbers)
            set_key = torch.tensor(number) * _SET_MULTIPLIER  # wraps like the hashes
            all_keys.append(_sequence_hashes(list(collection)) + set_key)
        row_sets.append(number)
    keys = torch.cat(all_keys).sort().values
    return keys, torch.tensor(row_sets, dtype=torch.long)


def _is_excluded(hashes: torch.Tensor, row_sets: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    if keys.numel() == 0:
        return torch.zeros_like(hashes, dtype=torch.bool)
    query = hashes + row_sets.view(-1, *([1] * (hashes.dim() - 1))) * _SET_MULTIPLIER
    positions = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
    return keys[positions] == query


def _to_lists(history: torch.Tensor, scores: torch.Tensor, pad: int) -> list[list[tuple[tuple[int, ...], float]]]:
    # Within a group, best first (the groups stay in their order).
    order = scores.argsort(dim=2, descending=True, stable=True)
    scores = scores.gather(2, order)
    history = history.gather(2, order[..., None].expand_as(history))
    results = []
    for row_tokens, row_scores in zip(history.flatten(1, 2).tolist(), scores.flatten(1).tolist()):
        row = []
        for tokens, score in zip(row_tokens, row_scores):
            if score != float("-inf"):
                row.append((tuple(token for token in tokens if token != pad), score))
        results.append(row)
    return results


def _check_arguments(input_ids, num_groups, beams_per_group, diversity_penalty, min_length, max_length, exclude):
    if input_ids.dim() != 2:
        raise BenchError(f"diverse_beam_search: input_ids must be [batch, length], got {tuple(input_ids.shape)}")
    if num_groups < 1 or beams_per_group < 1:
        raise BenchError(
            f"diverse_beam_search: num_groups={num_groups} and beams_per_group={beams_per_group} must be >= 1"
        )
    if diversity_penalty < 0:
        raise BenchError(f"diverse_beam_search: diversity_penalty={diversity_penalty} must be >= 0")
    if not 0 <= min_length <= max_length or max_length < 1:
        raise BenchError(
            f"diverse_beam_search: need 0 <= min_length <= max_length and max_length >= 1, "
            f"got min_length={min_length}, max_length={max_length}"
        )
    if exclude is not None and len(exclude) != input_ids.shape[0]:
        raise BenchError(
            f"diverse_beam_search: exclude has {len(exclude)} entries for {input_ids.shape[0]} prompts"
        )
