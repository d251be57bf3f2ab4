"""HSTU's network (Zhai et al., ICML 2024, arXiv 2402.17152, §3 and §4.1.1).

**A block** (Eqs. 1-3): the input is layer-normalised, one linear map and SiLU give four
parts ``U, V, Q, K`` (Eq. 1); the attention is *pointwise aggregated*:
``A = SiLU(Q K^T + rab) / N`` over the causal pairs, no softmax (Eq. 2), so a history's
intensity is kept instead of being normalised away; its output ``A V`` is layer-normalised
and gated elementwise by ``U`` before the output projection, dropout and the residual
(Eq. 3). ``N`` is the model's sequence length, a constant, as in the authors' code.

**Relative attention bias** ``rab``: one learned weight per relative position ``j - i``
and, where the dataset has timestamps, one per bucket of ``log(|t_i - t_j|) / 0.301``
(the authors' bucketing; ``rab^{p,t}`` of §3, Eq. 2). Their code measures the time from the
*next* action's timestamp (the request time in their setting); the harness gives a method
no target timestamp, so the gap here is measured from the query item's own time.

**Around the blocks** (§4.1.1, as the authors' sequential configs): item embeddings scaled
by ``sqrt(d)`` plus learned absolute positions, dropout; the last block's output and the
item embeddings are L2-normalised, and their inner product divided by a temperature is the
logit. Training is autoregressive: every position of the sequence predicts the next item,
against ``negatives`` items drawn uniformly per position (sampled softmax) or, with
``negatives = 0``, every item (full softmax).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

PAD = 0  # item index 0 is padding; item i of the catalogue is row i + 1 of the embedding table
TIME_BUCKET_BASE = 0.301  # log10(2) in the authors' bucketing: one bucket per doubling of the gap


def hstu_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                   allowed: torch.Tensor, sequence_length: int) -> torch.Tensor:
    """Pointwise aggregated attention (Eq. 2): ``(SiLU(q k^T + bias) / N) * allowed @ v``.

    ``q, k`` ``[B, L, H, dqk]``, ``v`` ``[B, L, H, dv]``, ``bias`` broadcastable to
    ``[B, L, L]`` (or None), ``allowed`` a bool ``[B, L, L]`` (causal and not padding),
    ``N = sequence_length``. Returns ``[B, L, H * dv]``."""
    scores = torch.einsum("bihd,bjhd->bhij", q, k)
    if bias is not None:
        scores = scores + bias.unsqueeze(1)
    weights = F.silu(scores) / sequence_length * allowed.unsqueeze(1).to(scores.dtype)
    output = torch.einsum("bhij,bjhd->bihd", weights, v)
    return output.reshape(output.shape[0], output.shape[1], -1)


class RelativeBias(nn.Module):
    """``rab^{p,t}``: a weight per relative position (``2N - 1`` of them) plus, when timestamps
    are given, a weight per log-bucket of the time gap."""

    def __init__(self, max_length: int, time_buckets: int) -> None:
        super().__init__()
        self.max_length, self.time_buckets = max_length, time_buckets
        self.position_weights = nn.Parameter(torch.empty(2 * max_length - 1).normal_(0.0, 0.02))
        self.time_weights = nn.Parameter(torch.empty(time_buckets + 1).normal_(0.0, 0.02)) if time_buckets else None

    def forward(self, length: int, timestamps: torch.Tensor | None) -> torch.Tensor:
        """``[1 or B, length, length]``: entry ``(i, j)`` is ``w_p[j - i] (+ w_t[bucket(t_i - t_j)])``."""
        positions = torch.arange(length, device=self.position_weights.device)
        bias = self.position_weights[positions[None, :] - positions[:, None] + self.max_length - 1][None]
        if timestamps is not None and self.time_weights is not None:
            gaps = (timestamps[:, :, None] - timestamps[:, None, :]).abs().clamp(min=1.0)
            buckets = (torch.log(gaps) / TIME_BUCKET_BASE).long().clamp(0, self.time_buckets)
            bias = bias + self.time_weights[buckets]
        return bias


class HSTUBlock(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, attention_dim: int, linear_dim: int, dropout: float,
                 sequence_length: int) -> None:
        super().__init__()
        self.num_heads, self.attention_dim, self.linear_dim = num_heads, attention_dim, linear_dim
        self.sequence_length = sequence_length
        # Eq. 1: one projection gives U, V (linear_dim per head) and Q, K (attention_dim per head).
        self.uvqk = nn.Linear(hidden_size, num_heads * (2 * linear_dim + 2 * attention_dim), bias=False)
        nn.init.normal_(self.uvqk.weight, 0.0, 0.02)
        self.output = nn.Linear(num_heads * linear_dim, hidden_size)
        nn.init.xavier_uniform_(self.output.weight)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        projected = F.silu(self.uvqk(F.layer_norm(x, x.shape[-1:], eps=1e-6)))
        heads_linear, heads_attention = self.num_heads * self.linear_dim, self.num_heads * self.attention_dim
        u, v, q, k = projected.split([heads_linear, heads_linear, heads_attention, heads_attention], dim=-1)
        attended = hstu_attention(q.reshape(batch, length, self.num_heads, self.attention_dim),
                                  k.reshape(batch, length, self.num_heads, self.attention_dim),
                                  v.reshape(batch, length, self.num_heads, self.linear_dim),
                                  bias, allowed, self.sequence_length)
        # Eq. 3: the normalised attention output, gated elementwise by U.
        gated = u * F.layer_norm(attended, attended.shape[-1:], eps=1e-6)
        return x + self.output(self.dropout(gated))


class HSTUModel(nn.Module):
    def __init__(self, n_items: int, hidden_size: int, num_layers: int, num_heads: int, attention_dim: int,
                 linear_dim: int, dropout: float, max_length: int, time_buckets: int, temperature: float,
                 negatives: int) -> None:
        super().__init__()
        self.n_items, self.max_length = n_items, max_length
        self.temperature, self.negatives = temperature, negatives
        self.item_embeddings = nn.Embedding(n_items + 1, hidden_size, padding_idx=PAD)
        nn.init.normal_(self.item_embeddings.weight, 0.0, 1.0 / math.sqrt(hidden_size))
        self.positions = nn.Embedding(max_length, hidden_size)
        nn.init.trunc_normal_(self.positions.weight, 0.0, math.sqrt(1.0 / hidden_size))
        self.input_dropout = nn.Dropout(dropout)
        # One bias module per block, as in the authors' code (each block learns its own rab).
        self.biases = nn.ModuleList(RelativeBias(max_length, time_buckets) for _ in range(num_layers))
        self.blocks = nn.ModuleList(HSTUBlock(hidden_size, num_heads, attention_dim, linear_dim, dropout, max_length)
                                    for _ in range(num_layers))

    def encode(self, items: torch.Tensor, timestamps: torch.Tensor | None = None) -> torch.Tensor:
        """Right-padded item rows ``[B, L]`` (catalogue index + 1, 0 = padding) to the
        L2-normalised output of every position ``[B, L, d]``."""
        batch, length = items.shape
        present = items != PAD
        x = self.item_embeddings(items) * math.sqrt(self.item_embeddings.embedding_dim)
        x = self.input_dropout(x + self.positions(torch.arange(length, device=items.device))[None])
        x = x * present.unsqueeze(-1).to(x.dtype)
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        allowed = causal[None] & present[:, None, :] & present[:, :, None]
        for bias, block in zip(self.biases, self.blocks):
            x = block(x, bias(length, timestamps), allowed)
        return F.normalize(x, dim=-1, eps=1e-6)

    def normalised_items(self) -> torch.Tensor:
        """Every catalogue item's L2-normalised embedding ``[n_items, d]`` (padding row left out)."""
        return F.normalize(self.item_embeddings.weight[1:], dim=-1, eps=1e-6)

    def forward(self, items: torch.Tensor, targets: torch.Tensor, timestamps: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Mean next-item loss over the valid positions (``targets`` 0 where there is none)."""
        states = self.encode(items, timestamps)
        valid = targets != PAD
        states, positives = states[valid], targets[valid]
        if self.negatives == 0:
            logits = states @ self.normalised_items().t() / self.temperature
            return F.cross_entropy(logits.float(), positives - 1)
        positive_logits = (states * F.normalize(self.item_embeddings(positives), dim=-1, eps=1e-6)).sum(-1)
        sampled = torch.randint(1, self.n_items + 1, (len(positives), self.negatives), device=positives.device)
        negative_logits = torch.einsum("nd,nrd->nr", states,
                                       F.normalize(self.item_embeddings(sampled), dim=-1, eps=1e-6))
        # A draw of the positive itself is no negative (the authors mask it the same way).
        negative_logits = negative_logits.masked_fill(sampled == positives[:, None], -5e4 * self.temperature)
        logits = torch.cat([positive_logits[:, None], negative_logits], dim=1) / self.temperature
        return -F.log_softmax(logits.float(), dim=1)[:, 0].mean()

    @torch.no_grad()
    def score(self, items: torch.Tensor, lengths: torch.Tensor, timestamps: torch.Tensor | None = None
              ) -> torch.Tensor:
        """Cosine scores of every item ``[B, n_items]`` from the last position of each row."""
        states = self.encode(items, timestamps)
        last = states[torch.arange(len(items), device=items.device), lengths - 1]
        return (last @ self.normalised_items().t()).float()
