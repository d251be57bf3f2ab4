"""SETRec's network on a T5 backbone (Sec. 3.2, 3.3).

**Set identifiers.** Every item is a set of tokens, one per *information dimension*: the
CF token (the frozen SASRec embedding through a learned linear projection) and ``n_sem``
semantic tokens (:mod:`methods.setrec.semantic_tokenizer`). The ablation switches drop the
CF token or the semantic tokens.

**Encoder input.** Instruction words, then each history item as its set of tokens, then the
response words. The tokens of one item share one position, so the set has no order inside
while the items keep theirs. T5 has no absolute positions: the first self-attention layer
adds a bias looked up from the bucketed *relative* position of each pair of tokens, so the
bias here is computed from per-token position ids (instruction ``0..I-1``, item ``j`` of
the history at ``I + j`` for all its tokens, response after the last item). Ids are counted
over each user's own items, so padding never shifts a distance. ``item_positions =
"sequential"`` (ablation) gives every token its own position instead.

**Query-guided simultaneous generation.** ``n_query`` learned query vectors (one per
dimension; one shared vector in the ablation) are the decoder's whole input, in one step.
A diagonal self-attention mask lets each query attend to the encoder and to itself, never
to another query: the tokens of the next item are generated independently, with no order.

**Grounding and loss.** The output of query ``d`` scores every item by the inner product
with that item's dimension-``d`` token. Training: softmax cross-entropy over all items per
dimension (Eq. 6), averaged over dimensions, plus ``alpha`` x the autoencoder's mean
squared reconstruction error over the batch's history items (Eq. 8). Inference:
``(1 - beta) * CF score + beta * sum of semantic scores`` (Eq. 9), ``beta`` chosen on
validation by the method.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch
from torch import nn

from methods.setrec.semantic_tokenizer import SemanticAutoencoder

if TYPE_CHECKING:
    from transformers import T5ForConditionalGeneration

PAD_ITEM = -1  # history padding (left); never an item index

ItemPositions = Literal["shared", "sequential"]


def encoder_position_ids(history_lengths: torch.Tensor, max_history: int, tokens_per_item: int, n_instruction: int,
                         n_response: int, item_positions: ItemPositions) -> torch.Tensor:
    """Position id of every encoder token ``[batch, I + max_history * T + R]``.

    Layout: instruction, ``max_history`` left-padded item slots of ``T`` tokens each,
    response. Slot ``s`` of a user with ``n`` items holds item ``j = s - (max_history - n)``.
    Padding slots get ids too (they are masked out of attention anyway)."""
    device = history_lengths.device
    lengths = history_lengths[:, None]
    slot = torch.arange(max_history, device=device)[None, :]
    item_index = slot - (max_history - lengths)  # [B, H], negative on padding
    token = torch.arange(tokens_per_item, device=device)
    if item_positions == "shared":
        items = n_instruction + item_index[:, :, None].expand(-1, -1, tokens_per_item)
        after_items = n_instruction + lengths
    else:
        items = n_instruction + item_index[:, :, None] * tokens_per_item + token[None, None, :]
        after_items = n_instruction + lengths * tokens_per_item
    instruction = torch.arange(n_instruction, device=device)[None, :].expand(len(lengths), -1)
    response = after_items + torch.arange(n_response, device=device)[None, :]
    return torch.cat([instruction, items.reshape(len(lengths), -1), response], dim=1)


def _position_aware_bias(self, query_length: int, key_length: int, device=None, past_seen_tokens=0):
    """T5Attention.compute_bias from ``self.setrec_position_ids`` ([batch, length]) when set:
    one bias matrix per user ``[batch, heads, length, length]``, with the padding mask
    ``self.setrec_present`` folded in (so the attention needs no separate mask)."""
    position_ids = getattr(self, "setrec_position_ids", None)
    if position_ids is None:
        return type(self).compute_bias(self, query_length, key_length, device, past_seen_tokens)
    relative = position_ids[:, None, :] - position_ids[:, :, None]  # memory - context
    # Bucket each distinct distance once, then gather: bucketing B x L x L pairs (a log per
    # pair) cost more than the encoder's matrix products.
    span = int(relative.abs().max())
    distances = torch.arange(-span, span + 1, device=relative.device)
    buckets = self._relative_position_bucket(distances, bidirectional=not self.is_decoder,
                                             num_buckets=self.relative_attention_num_buckets,
                                             max_distance=self.relative_attention_max_distance)
    table = self.relative_attention_bias(buckets)  # [2 span + 1, heads]
    # One more row, the dtype's minimum, for every (query, padding key) pair: the mask.
    table = torch.cat([table, torch.full_like(table[:1], torch.finfo(table.dtype).min)])
    index = torch.where(self.setrec_present[:, None, :], relative + span, len(table) - 1)
    return table.t()[:, index].transpose(0, 1)  # [batch, heads, length, length]


def query_attention_mask(n_queries: int, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Additive decoder self-attention mask ``[batch, 1, Q, Q]``: 0 on the diagonal, the
    dtype's minimum elsewhere (a query sees itself only). Additive, not 0/1: added to the
    attention scores, a 1 would not mask anything."""
    blocked = ~torch.eye(n_queries, dtype=torch.bool, device=device)
    mask = torch.zeros(n_queries, n_queries, dtype=dtype, device=device).masked_fill(blocked, torch.finfo(dtype).min)
    return mask[None, None].expand(batch, 1, n_queries, n_queries)


class SETRecModel(nn.Module):
    def __init__(self, backbone: "T5ForConditionalGeneration", instruction_ids: Sequence[int],
                 response_ids: Sequence[int], cf_embeddings: np.ndarray | None, text_embeddings: np.ndarray | None,
                 n_sem: int, autoencoder_layers: Sequence[int], alpha: float, shared_query: bool = False,
                 item_positions: ItemPositions = "shared") -> None:
        super().__init__()
        if cf_embeddings is None and text_embeddings is None:
            raise ValueError("SETRec needs the CF token, the semantic tokens, or both")
        d_model = backbone.config.d_model
        # Encoder, decoder and the shared word embeddings; T5's LM head is not used.
        self.encoder, self.decoder = backbone.get_encoder(), backbone.get_decoder()
        self.word_embeddings = backbone.get_input_embeddings()
        self.register_buffer("instruction_ids", torch.as_tensor(list(instruction_ids), dtype=torch.long))
        self.register_buffer("response_ids", torch.as_tensor(list(response_ids), dtype=torch.long))
        self.alpha, self.item_positions = alpha, item_positions
        self.has_cf = cf_embeddings is not None
        self.n_sem = n_sem if text_embeddings is not None else 0
        if self.has_cf:
            # Frozen CF tokenizer output (a buffer: never trained); only the projection learns.
            self.register_buffer("cf_embeddings", torch.as_tensor(cf_embeddings, dtype=torch.float32))
            self.cf_projection = nn.Linear(self.cf_embeddings.shape[1], d_model)
        if self.n_sem:
            self.register_buffer("text_embeddings", torch.as_tensor(text_embeddings, dtype=torch.float32))
            self.autoencoder = SemanticAutoencoder(self.text_embeddings.shape[1], autoencoder_layers, d_model, n_sem)
        self.n_dimensions = int(self.has_cf) + self.n_sem
        self.queries = nn.Embedding(1 if shared_query else self.n_dimensions, d_model)
        nn.init.normal_(self.queries.weight, mean=0.0, std=0.02)
        attention = self.encoder.block[0].layer[0].SelfAttention
        attention.compute_bias = types.MethodType(_position_aware_bias, attention)
        self._relative_attention = attention

    @property
    def n_items(self) -> int:
        return len(self.cf_embeddings) if self.has_cf else len(self.text_embeddings)

    def item_tokens(self) -> torch.Tensor:
        """Every item's set of tokens ``[n_dimensions, n_items, d_model]``, CF first."""
        dimensions = []
        if self.has_cf:
            dimensions.append(self.cf_projection(self.cf_embeddings)[None])
        if self.n_sem:
            dimensions.append(self.autoencoder(self.text_embeddings))
        return torch.cat(dimensions, dim=0)

    def query_outputs(self, history: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """One encoder and one decoder pass: the queries' outputs ``[batch, n_dimensions, d_model]``."""
        batch, max_history = history.shape
        present = history != PAD_ITEM
        lengths = present.sum(dim=1)
        per_item = tokens[:, history.clamp(min=0)]  # [T, B, H, d]
        n_tokens = per_item.shape[0]
        item_embeddings = per_item.permute(1, 2, 0, 3).reshape(batch, max_history * n_tokens, -1)
        instruction = self.word_embeddings(self.instruction_ids)[None].expand(batch, -1, -1)
        response = self.word_embeddings(self.response_ids)[None].expand(batch, -1, -1)
        inputs = torch.cat([instruction, item_embeddings.to(instruction.dtype), response], dim=1)
        ones = torch.ones(batch, 1, dtype=torch.long, device=history.device)
        attention_mask = torch.cat([ones.expand(-1, len(self.instruction_ids)),
                                    present.long().repeat_interleave(n_tokens, dim=1),
                                    ones.expand(-1, len(self.response_ids))], dim=1)
        self._relative_attention.setrec_position_ids = encoder_position_ids(
            lengths, max_history, n_tokens, len(self.instruction_ids), len(self.response_ids), self.item_positions)
        self._relative_attention.setrec_present = attention_mask.bool()
        try:
            # The padding mask travels inside the position bias (see _position_aware_bias).
            encoded = self.encoder(inputs_embeds=inputs).last_hidden_state
        finally:
            self._relative_attention.setrec_position_ids = self._relative_attention.setrec_present = None
        queries = self.queries.weight[None].expand(batch, -1, -1)
        decoded = self.decoder(inputs_embeds=queries,
                               attention_mask=query_attention_mask(len(self.queries.weight), batch, queries.dtype,
                                                                   queries.device),
                               encoder_hidden_states=encoded, encoder_attention_mask=attention_mask,
                               use_cache=False).last_hidden_state
        return decoded.expand(-1, self.n_dimensions, -1)  # a shared query serves every dimension

    def forward(self, history: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch: Eq. 6 per dimension (mean) + alpha x reconstruction MSE (Eq. 8)."""
        tokens = self.item_tokens()
        outputs = self.query_outputs(history, tokens)
        logits = torch.einsum("bqd,qnd->bqn", outputs, tokens.to(outputs.dtype))
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                           target.repeat_interleave(self.n_dimensions))
        if self.n_sem:
            # As the official code: the history items of the batch (with repeats) are reconstructed.
            seen = history[history != PAD_ITEM]
            reconstruction = self.autoencoder.reconstruct(tokens[int(self.has_cf):, seen])
            loss = loss + self.alpha * nn.functional.mse_loss(reconstruction.float(), self.text_embeddings[seen])
        return loss

    @torch.no_grad()
    def dimension_scores(self, history: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Inner-product scores ``[batch, n_dimensions, n_items]`` for one batch of users."""
        outputs = self.query_outputs(history, tokens)
        return torch.einsum("bqd,qnd->bqn", outputs, tokens.to(outputs.dtype)).float()

    def grounding_weights(self, beta: float) -> torch.Tensor:
        """Eq. 9: ``1 - beta`` for the CF dimension, ``beta`` for each semantic one."""
        weights = ([1.0 - beta] if self.has_cf else []) + [beta] * self.n_sem
        return torch.tensor(weights)
