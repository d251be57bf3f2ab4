"""Beam search constrained to the item trie, batched over many users (P5 / IDGenRec decoding).

Each user's prompt is encoded once; the decoder then runs one token per step over
``beam_width`` beams per user with T5's key/value cache, whose cross-attention part keeps
one row per prompt (beams attend to it as a group) instead of one copy per beam. Only the
tokens the trie allows are scored, gathered along the beams' trie edges. A beam that
writes EOS has reached an item: it is kept as a result and no longer expanded. A user is
finished once it holds ``num_results`` items that no open beam can beat
(log-probabilities only fall as a beam grows), and is then dropped from the batch.

The model runs on the run's device under its precision's autocast (the ``runtime`` the
caller passes, :mod:`bench.runtime`); the beams' bookkeeping (trie walk, results) stays on
the CPU, and only the allowed tokens' log-probabilities cross over each step. With an ID-token
output layer (:mod:`bench.engine.output_head`) the logits hold one column per ID token, and
the log-probabilities are normalised over those."""

from __future__ import annotations

import contextlib
import inspect
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from bench.engine.output_head import output_columns, vocabulary_size
from bench.engine.trie import ItemTrie
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.runtime import Runtime

_GROUPED_ATTENTION = "genrec_beams_share_prompt"


def _grouped_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA where the cross-attention cache holds one row per prompt, not one per beam.

    The decoder rows are prompt-major (``prompt * group + beam``), so the beams of a
    prompt become ``group`` query positions against that prompt's keys: no copy of the
    encoder keys/values per beam, and each is read once per prompt per step.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    rows, prompts = query.shape[0], key.shape[0]
    if rows == prompts:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if query.shape[2] != 1 or rows % prompts:
        raise RuntimeError(f"grouped attention needs one query per row and whole groups, got {tuple(query.shape)}")
    group = rows // prompts
    heads, head_dim = query.shape[1], query.shape[3]
    grouped_query = query.view(prompts, group, heads, head_dim).transpose(1, 2)
    # The encoder mask is the same for every beam of a prompt: keep one row per prompt.
    mask = attention_mask[::group] if attention_mask is not None else None
    output, weights = sdpa_attention_forward(module, grouped_query, key, value, mask, **kwargs)
    return output.reshape(rows, 1, heads, head_dim), weights


@contextlib.contextmanager
def beams_share_prompt_attention(model) -> Iterator[None]:
    """Run ``model`` with :func:`_grouped_attention` inside the block, then restore it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(_GROUPED_ATTENTION, _grouped_attention)
    AttentionMaskInterface.register(_GROUPED_ATTENTION, sdpa_mask)
    previous = model.config._attn_implementation
    model.set_attn_implementation(_GROUPED_ATTENTION)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


class IncrementalDecoder:
    """T5's decoder run one token at a time over beams that share their prompt's encoder pass.

    Use inside :func:`beams_share_prompt_attention`. ``start()`` runs the decoder start
    token once per prompt and fills the cross-attention cache, one row per prompt.
    ``step(tokens, source_rows)`` then takes ``[n_prompts, group]`` tensors: beam ``j`` of
    prompt ``i`` appends ``tokens[i, j]`` to the beam in row ``source_rows[i, j]`` of the
    previous call's flattened rows (which must belong to the same prompt). ``keep_prompts``
    drops prompts: indices into the prompts of the previous call, in order.
    """

    def __init__(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor, runtime: "Runtime") -> None:
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        if "cache" not in inspect.signature(model.forward).parameters:
            import transformers

            raise BenchError(f"beam search needs transformers>=5.25 (its decoder takes `cache`); "
                             f"found {transformers.__version__}: pip install 'transformers>=5.25,<6'")
        if model.config.decoder_start_token_id is None:
            raise BenchError("IncrementalDecoder: the model config has no decoder_start_token_id")
        self.runtime = runtime
        self.model = self.runtime.place(model)
        self.device = self.runtime.device
        input_ids, attention_mask = self.runtime.to_device((input_ids, attention_mask))
        self.attention_mask = attention_mask
        with self.runtime.autocast():
            self.encoder_hidden = model.get_encoder()(input_ids=input_ids,
                                                      attention_mask=attention_mask).last_hidden_state
        self.cache = EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
        self.prompts = torch.arange(input_ids.shape[0], device=self.device)  # the prompts still in the cache

    def start(self) -> torch.Tensor:
        """Logits ``[n_prompts, vocab]`` of the first token (float32, on the model's device)."""
        tokens = torch.full((self.prompts.numel(), 1), self.model.config.decoder_start_token_id, dtype=torch.long,
                            device=self.device)
        return self._forward(tokens, self.encoder_hidden, self.attention_mask)

    def step(
        self, tokens: torch.Tensor, source_rows: torch.Tensor, keep_prompts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``[n_prompts * group, vocab]`` of the token after ``tokens`` (prompt-major).
        The arguments may be on the CPU; the logits are on the model's device."""
        tokens, source_rows, keep_prompts = self.runtime.to_device((tokens, source_rows, keep_prompts))
        if keep_prompts is not None:
            self.cache.cross_attention_cache.reorder_cache(keep_prompts)
            self.prompts = self.prompts[keep_prompts]
        self.cache.self_attention_cache.reorder_cache(source_rows.reshape(-1))
        n_prompts, group = tokens.shape
        encoder_mask = self.attention_mask[self.prompts].repeat_interleave(group, dim=0)
        # With the cross-attention cache filled T5 reads only the shape of the encoder
        # states, so a stride-0 placeholder stands in for them.
        placeholder = self.encoder_hidden.new_zeros(()).expand(n_prompts * group, *self.encoder_hidden.shape[1:])
        return self._forward(tokens.reshape(-1, 1), placeholder, encoder_mask)

    def _forward(self, tokens: torch.Tensor, encoder_states: torch.Tensor, encoder_mask: torch.Tensor) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        with self.runtime.autocast():
            output = self.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoder_states),
                attention_mask=encoder_mask,
                decoder_input_ids=tokens,
                cache=self.cache,
                use_cache=True,
            )
        self.cache = output.cache
        return output.logits[:, -1, :].float()


def constrained_beam_search(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: ItemTrie,
    beam_width: int = 20,
    num_results: int = 10,
    *,
    runtime: "Runtime",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``num_results`` best items per prompt, by total log-probability of their ID, with
    the model on ``runtime``'s device under its autocast.

    Returns ``(item_indices [B, num_results], log_probs [B, num_results])``, best first,
    distinct per row, ties broken by the smaller item index. Rows with fewer reachable
    items are padded with item -1 and log-prob -inf.
    """
    if not 1 <= num_results <= beam_width:
        # With fewer beams than results, the beams can all close before num_results
        # items are found, and the evaluator refuses short lists.
        raise BenchError(
            f"constrained_beam_search: need 1 <= num_results <= beam_width, got num_results={num_results}, "
            f"beam_width={beam_width}"
        )
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
        raise BenchError(
            f"constrained_beam_search: input_ids {tuple(input_ids.shape)} and attention_mask "
            f"{tuple(attention_mask.shape)} must be the same [batch, length] shape"
        )
    n_users = input_ids.shape[0]
    eos = trie.eos_token_id
    result_scores = torch.full((n_users, num_results), -torch.inf)
    result_items = torch.full((n_users, num_results), -1, dtype=torch.long)
    if n_users == 0:
        return result_items, result_scores

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), beams_share_prompt_attention(model):
            decoder = IncrementalDecoder(model, input_ids, attention_mask, runtime)
            logits = decoder.start()
            if trie.key_base > vocabulary_size(model, logits):
                raise BenchError(
                    f"constrained_beam_search: the trie uses token {trie.key_base - 1} but the model's "
                    f"vocabulary has {vocabulary_size(model, logits)}"
                )
            users = torch.arange(n_users)  # the users still searching
            beam_scores = torch.zeros(n_users, 1)  # one beam per user at the root
            beam_nodes = torch.zeros(n_users, 1, dtype=torch.long)
            for _depth in range(trie.max_depth):
                n_active, n_beams = beam_scores.shape
                # Only allowed tokens are scored: gather their log-probs along every beam's
                # trie edges rather than masking the whole [beams, vocab] matrix.
                rows, tokens, children = trie.edges(beam_nodes.reshape(-1))
                normaliser = torch.logsumexp(logits, dim=-1)
                on_device = decoder.runtime.to_device((rows, output_columns(model, tokens)))
                token_log_probs = (logits[on_device] - normaliser[on_device[0]]).cpu()
                edge_scores = beam_scores.reshape(-1)[rows] + token_log_probs
                ending = tokens == eos

                # Every beam that may write EOS here completes exactly one item.
                eos_scores = torch.full((n_active * n_beams,), -torch.inf)
                eos_items = torch.full((n_active * n_beams,), -1, dtype=torch.long)
                eos_scores[rows[ending]] = edge_scores[ending]
                eos_items[rows[ending]] = trie.node_item[children[ending]]
                merged_scores, merged_items = _merge_results(
                    result_scores[users], result_items[users],
                    eos_scores.view(n_active, n_beams), eos_items.view(n_active, n_beams), num_results,
                )
                result_scores[users] = merged_scores
                result_items[users] = merged_items

                # The open beams: each user's best continuations that do not end.
                going = ~ending
                rows, tokens, children = rows[going], tokens[going], children[going]
                if rows.numel() == 0:
                    break
                top_scores, top_edges, valid = _best_per_user(rows // n_beams, edge_scores[going], n_active, beam_width)

                # Finished: num_results items found and no open beam can reach the worst
                # of them (a tie goes on: it may be a smaller item index), or nothing left
                # open (the trie holds fewer items than asked).
                best_open = top_scores[:, 0]
                done = (best_open < merged_scores[:, -1]) | torch.isneginf(best_open)
                if bool(done.all()):
                    break
                keep = (~done).nonzero().squeeze(1)
                valid = valid[keep]
                # A beam slot with no continuation stays dead (node -1, score -inf) and
                # borrows its user's first cache row, so rows never change users.
                first_row = (keep * n_beams)[:, None]
                source_rows = torch.where(valid, rows[top_edges[keep]], first_row)
                next_tokens = torch.where(valid, tokens[top_edges[keep]], trie.pad_token_id)
                beam_nodes = torch.where(valid, children[top_edges[keep]], -1)
                beam_scores = top_scores[keep]
                users = users[keep]
                logits = decoder.step(next_tokens, source_rows, keep if keep.numel() < n_active else None)
    finally:
        model.train(was_training)
    return result_items, result_scores


def rank_items(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, trie: ItemTrie, k: int,
               beam_width: int, candidates=None, *, runtime: "Runtime") -> np.ndarray:
    """A ranking method's ``rank``: the top ``k`` items per prompt (padded with -1), searched
    over every item of ``trie`` or only over ``candidates`` (a boolean mask over the items:
    the evaluator's within-group ranking)."""
    trie = trie if candidates is None else trie.restricted(candidates)
    items, _ = constrained_beam_search(model, input_ids, attention_mask, trie,
                                       beam_width=max(beam_width, k), num_results=k, runtime=runtime)
    return items.numpy()


def _merge_results(
    scores: torch.Tensor, items: torch.Tensor, new_scores: torch.Tensor, new_items: torch.Tensor, keep: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``keep`` of the current results and the new completions, per row.

    Sorted by score, ties by the smaller item index (two stable sorts); impossible
    completions (-inf) become padding item -1.
    """
    all_scores = torch.cat([scores, new_scores], dim=1)
    all_items = torch.cat([items, new_items], dim=1)
    all_items = torch.where(torch.isneginf(all_scores), -1, all_items)
    # Padding sorts after every real item of equal (-inf) score.
    item_key = torch.where(all_items < 0, torch.iinfo(torch.long).max, all_items)
    order = item_key.argsort(dim=1, stable=True)
    all_scores, all_items = all_scores.gather(1, order), all_items.gather(1, order)
    order = all_scores.argsort(dim=1, descending=True, stable=True)[:, :keep]
    return all_scores.gather(1, order), all_items.gather(1, order)


def _best_per_user(
    edge_users: torch.Tensor, edge_scores: torch.Tensor, n_users: int, beam_width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each user's best ``beam_width`` edges (edges grouped by user, users ascending).

    Returns ``(scores, edge_index, valid)``, each ``[n_users, width]`` with width at most
    ``beam_width``; slots past a user's edge count are invalid with score -inf.
    """
    counts = torch.bincount(edge_users, minlength=n_users)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(edge_users.numel()) - starts[edge_users]
    padded = torch.full((n_users, int(counts.max())), -torch.inf)
    padded[edge_users, position] = edge_scores
    top_scores, top_positions = padded.topk(min(beam_width, padded.shape[1]), dim=1)
    valid = top_positions < counts[:, None]
    edge_index = torch.where(valid, starts[:, None] + top_positions, 0)
    return top_scores.masked_fill(~valid, -torch.inf), edge_index, valid
