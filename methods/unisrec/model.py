"""UniSRec's network (Hou et al., KDD 2022, Sec. 3): frozen item text embeddings ->
parametric whitening -> mixture-of-experts adaptor -> a SASRec-style transformer, and its
three objectives (two contrastive pre-training losses, one fine-tuning loss).

The transformer, its causal mask and the last-position gather are RecBole's own
(``recbole.model.layers.TransformerEncoder`` and ``SequentialRecommender``'s helpers), as
the official code subclasses RecBole's SASRec. Items are never embedded by ID: the
model reads the text embedding table of whichever catalogue it is given
(:meth:`UniSRecModel.use_catalogue`), which is what lets a model pre-trained on some
domains score the items of another (zero-shot) or be fine-tuned on it (inductive).

Sequences are left-aligned item indices shifted by one (0 pads), as RecBole lays them out.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from bench import recbole_compat

recbole_compat.ensure_compatible()
from recbole.model.abstract_recommender import SequentialRecommender  # noqa: E402
from recbole.model.layers import TransformerEncoder  # noqa: E402

# Noise floor of the gate's noise scale (the official code's noise_epsilon).
GATE_NOISE_FLOOR = 1e-2
ENCODE_BLOCK = 512  # sequences per transformer call (see UniSRecModel.encode)


@dataclasses.dataclass(frozen=True)
class NetworkOptions:
    text_dim: int
    hidden_size: int
    inner_size: int
    n_layers: int
    n_heads: int
    hidden_dropout_prob: float
    attn_dropout_prob: float
    n_experts: int
    adaptor_dropout_prob: float
    max_seq_length: int
    temperature: float
    seq_seq_weight: float
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12


class MoEAdaptor(nn.Module):
    """Sec. 3.2: G parametric whitening experts x~(k) = (x - b_k) W1_k, mixed by a gate
    g = softmax(x W2 + delta), delta = N(0, 1) * softplus(x W3) while training (noisy
    gating). All experts in one matmul, (x - b_k) W_k = x W_k - b_k W_k; so the experts
    share one dropout mask on x (the official code draws one per expert): 3-4x faster on CPU."""

    def __init__(self, input_size: int, output_size: int, n_experts: int, dropout: float) -> None:
        super().__init__()
        self.n_experts, self.output_size = n_experts, output_size
        self.dropout = nn.Dropout(dropout)
        self.whitening_bias = nn.Parameter(torch.zeros(n_experts, input_size))
        self.whitening_weight = nn.Parameter(torch.empty(input_size, n_experts * output_size).normal_(std=0.02))
        # Zero gates: every expert starts with the same weight (as in the official code).
        self.gate_weight = nn.Parameter(torch.zeros(input_size, n_experts))
        self.noise_weight = nn.Parameter(torch.zeros(input_size, n_experts))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        logits = text @ self.gate_weight
        if self.training:
            noise_scale = functional.softplus(text @ self.noise_weight) + GATE_NOISE_FLOOR
            logits = logits + torch.randn_like(logits) * noise_scale
        gates = torch.softmax(logits, dim=-1)  # [N, G]
        weight = self.whitening_weight.view(-1, self.n_experts, self.output_size)
        shift = torch.einsum("gi,igo->go", self.whitening_bias, weight)  # b_k W_k: [G, out]
        experts = (self.dropout(text) @ self.whitening_weight).view(*text.shape[:-1], self.n_experts,
                                                                    self.output_size) - shift
        return (gates.unsqueeze(-1) * experts).sum(dim=-2)


class UniSRecModel(nn.Module):
    """Item text -> adaptor -> transformer over the history -> sequence vector s; items
    are scored by cos(s, v_i) (both L2-normalised, as in the official code)."""

    def __init__(self, options: NetworkOptions) -> None:
        super().__init__()
        self.options = options
        self.adaptor = MoEAdaptor(options.text_dim, options.hidden_size, options.n_experts, options.adaptor_dropout_prob)
        self.position_embedding = nn.Embedding(options.max_seq_length, options.hidden_size)
        self.trm_encoder = TransformerEncoder(n_layers=options.n_layers, n_heads=options.n_heads,
                                              hidden_size=options.hidden_size, inner_size=options.inner_size,
                                              hidden_dropout_prob=options.hidden_dropout_prob,
                                              attn_dropout_prob=options.attn_dropout_prob, hidden_act="gelu",
                                              layer_norm_eps=options.layer_norm_eps)
        self.layer_norm = nn.LayerNorm(options.hidden_size, eps=options.layer_norm_eps)
        self.dropout = nn.Dropout(options.hidden_dropout_prob)
        for module in (self.position_embedding, self.trm_encoder, self.layer_norm):
            module.apply(self._init_weights)
        empty = torch.zeros(1, options.text_dim)
        # The catalogue's text embeddings: row 0 is padding. Not parameters, not saved with
        # the weights: a checkpoint is the same model whatever catalogue it is used on.
        self.register_buffer("item_text", empty, persistent=False)
        self.register_buffer("item_text_dropped", empty, persistent=False)

    def _init_weights(self, module: nn.Module) -> None:
        # RecBole's SASRec initialisation (SASRec._init_weights), which the official UniSRec inherits.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.options.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    # ------------------------------------------------------------ catalogue

    def use_catalogue(self, text: np.ndarray, dropped_text: np.ndarray | None = None) -> None:
        """Read items from ``text`` ([n_items, text_dim]); ``dropped_text`` is the same
        catalogue's word-dropped text, needed by pre-training's word-drop view only."""
        if text.ndim != 2 or text.shape[1] != self.options.text_dim:
            raise ValueError(f"item text embeddings of shape {text.shape}, the model reads {self.options.text_dim}")
        padding = np.zeros((1, text.shape[1]), dtype=np.float32)
        self.item_text = torch.from_numpy(np.concatenate([padding, text.astype(np.float32)]))
        dropped = np.zeros((1, text.shape[1]), dtype=np.float32) if dropped_text is None else \
            np.concatenate([padding, dropped_text.astype(np.float32)])
        self.item_text_dropped = torch.from_numpy(dropped)

    @property
    def n_items(self) -> int:
        return self.item_text.shape[0] - 1

    def adapted_catalogue(self) -> torch.Tensor:
        """v_i of every catalogue item, row 0 the padding's: [n_items + 1, hidden]. Histories
        and candidates both read from it, so each item goes through the adaptor once."""
        return self.adaptor(self.item_text)

    # ------------------------------------------------------------- sequence

    def encode(self, rows: torch.Tensor, table: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Sec. 3.3 (self-attentive sequence encoding): f_j = v_{i_j} + p_j, a causal
        transformer, the last position's output s, L2-normalised: [B, hidden]. Position j
        of sequence b reads its item vector from ``table[rows[b, j]]``; positions at or
        past ``length[b]`` are padding.

        Sequences are encoded in blocks of similar length, each cut to its own longest
        sequence: a pre-training batch of 8,192 sequences padded to the longest of all
        would cost ~10x the computation (the outputs are the same: padding is at the end
        and attention is causal)."""
        order = torch.argsort(length)
        outputs = []
        for start in range(0, len(order), ENCODE_BLOCK):
            block = order[start:start + ENCODE_BLOCK]
            block_length = length[block]
            width = max(1, int(block_length.max()))
            outputs.append(self._encode_block(table[rows[block, :width]], block_length))
        return torch.cat(outputs)[torch.argsort(order)]

    def _encode_block(self, item_vectors: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(item_vectors.shape[1], device=item_vectors.device)
        hidden = self.dropout(self.layer_norm(item_vectors + self.position_embedding(positions).unsqueeze(0)))
        present = (positions.unsqueeze(0) < length.unsqueeze(1)).long()
        # RecBole's SASRec helpers use nothing of the model but their arguments.
        mask = SequentialRecommender.get_attention_mask(self, present)
        output = self.trm_encoder(hidden, mask, output_all_encoded_layers=True)[-1]
        last = SequentialRecommender.gather_indexes(self, output, (length - 1).clamp(min=0))
        return functional.normalize(last, dim=-1)

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch: pre-training when the batch has an augmented view,
        inductive fine-tuning otherwise (the loop calls the model, so DDP sees one forward)."""
        if "view_history" in batch:
            return self.pretraining_loss(**batch)
        return self.fine_tuning_loss(**batch)

    def pretraining_loss(self, history: torch.Tensor, length: torch.Tensor, target: torch.Tensor,
                         view_history: torch.Tensor, view_length: torch.Tensor,
                         view_word_drop: torch.Tensor) -> torch.Tensor:
        """Sec. 3.3.2: L_PT = l_S-I + lambda * l_S-S over in-batch (multi-domain) negatives.

        l_S-I: the sequence s_j against the next item v_j, the batch's other next items
        as negatives. l_S-S: s_j against its augmented view s~_j (item drop, or word drop:
        some items read from their word-dropped text), the other views as negatives.
        Negatives sharing the positive's next item are removed (the official code does too)."""
        # Every item a batch reads from the plain text table goes through the adaptor once.
        indices = torch.cat([history.flatten(), target + 1, view_history.flatten()])
        unique, inverse = torch.unique(indices, return_inverse=True)
        n_history, n_target = history.numel(), target.numel()
        history_rows = inverse[:n_history].view(history.shape)
        target_rows = inverse[n_history:n_history + n_target]
        view_rows = inverse[n_history + n_target:].view(view_history.shape).clone()
        # Word drop: those positions read their item's word-dropped text, appended to the table.
        view_rows[view_word_drop] = len(unique) + torch.arange(int(view_word_drop.sum()), device=view_rows.device)
        table = self.adaptor(torch.cat([self.item_text[unique], self.item_text_dropped[view_history[view_word_drop]]]))

        sequence = self.encode(history_rows, table, length)
        view = self.encode(view_rows, table, view_length)
        target_vectors = functional.normalize(table[target_rows], dim=-1)
        same_target = (target.unsqueeze(0) == target.unsqueeze(1)) & \
            ~torch.eye(len(target), dtype=torch.bool, device=target.device)
        seq_item = _in_batch_loss(sequence @ target_vectors.T / self.options.temperature, same_target)
        seq_seq = _in_batch_loss(sequence @ view.T / self.options.temperature, same_target)
        return seq_item + self.options.seq_seq_weight * seq_seq

    def fine_tuning_loss(self, history: torch.Tensor, length: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sec. 3.4, inductive setting: softmax over every catalogue item of
        cos(s, v_i) / tau, items read from their text only (no ID embedding)."""
        adapted = self.adapted_catalogue()
        sequence = self.encode(history, adapted, length)
        candidates = functional.normalize(adapted[1:], dim=-1)
        return functional.cross_entropy(sequence @ candidates.T / self.options.temperature, target)

    @torch.no_grad()
    def scores(self, history: torch.Tensor, length: torch.Tensor, adapted: torch.Tensor) -> torch.Tensor:
        """cos(s, v_i) for every catalogue item: [B, n_items] (ranking only needs the order);
        ``adapted`` is :meth:`adapted_catalogue` computed once for many batches."""
        sequence = self.encode(history, adapted, length)
        return sequence @ functional.normalize(adapted[1:], dim=-1).T


def _in_batch_loss(logits: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """-log softmax of the diagonal (row j's positive) over the row's kept negatives."""
    logits = logits.masked_fill(removed, torch.finfo(logits.dtype).min)
    return functional.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def pad_histories(histories: list[np.ndarray], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """The most recent ``max_length`` items of each history, shifted by one and
    left-aligned, 0-padded to the longest: ``(history [B, L], length [B])``."""
    kept = [np.asarray(history, dtype=np.int64)[-max_length:] + 1 for history in histories]
    lengths = np.asarray([len(items) for items in kept], dtype=np.int64)
    padded = np.zeros((len(kept), max(1, int(lengths.max(initial=0)))), dtype=np.int64)
    for row, items in enumerate(kept):
        padded[row, :len(items)] = items
    return padded, lengths


def freeze_sequence_encoder(model: UniSRecModel) -> list[str]:
    """Sec. 3.4 parameter-efficient fine-tuning: the pre-trained transformer and position
    embeddings stay fixed; the adaptor (and the input layer norm) adapt to the domain."""
    frozen = []
    for name, parameter in model.named_parameters():
        if name.startswith(("trm_encoder.", "position_embedding.")):
            parameter.requires_grad_(False)
            frozen.append(name)
    return frozen


def count_trainable(model: nn.Module) -> dict[str, Any]:
    return {"parameters": int(sum(p.numel() for p in model.parameters())),
            "trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad))}
