"""RPG's sequence model and multi-token prediction (Hou et al., KDD 2025, arXiv 2506.05781).

An item enters the sequence model as the mean of the embeddings of its ``m`` semantic-ID
tokens; a small GPT-2 (causal) reads the history. From its last hidden state, one residual
head per digit (a zero-initialised linear layer and SiLU, added to the state) gives ``m``
states; digit ``d``'s logits are the cosine similarities of state ``d`` with the embeddings
of the digit's ``K`` tokens, divided by a temperature. The loss is the mean over digits of
each digit's cross-entropy (multi-token prediction): every token of the next item is
predicted at once and independently, in one forward pass. An item's score is the mean of
its tokens' log-probabilities, as the authors' decoding scores it.

Token 0 is padding; digit ``d``'s code ``c`` is token ``1 + d * K + c``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

IGNORED = -100  # a label position without a target


class ResidualHead(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.linear.weight)  # starts as the identity, as in the authors' code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.silu(self.linear(x))


class RPGModel(nn.Module):
    def __init__(self, codes: torch.Tensor, codebook_size: int, hidden_size: int, num_layers: int, num_heads: int,
                 inner_size: int, embedding_dropout: float, attention_dropout: float, max_length: int,
                 temperature: float) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        n_digits = codes.shape[1]
        self.n_digits, self.codebook_size, self.temperature = n_digits, codebook_size, temperature
        offsets = 1 + torch.arange(n_digits) * codebook_size
        # Row i + 1 holds item i's tokens; row 0 (padding) holds token 0 everywhere.
        self.register_buffer("item_tokens", torch.cat([torch.zeros(1, n_digits, dtype=torch.long),
                                                       codes.long() + offsets]))
        config = GPT2Config(vocab_size=1 + n_digits * codebook_size, n_positions=max_length, n_embd=hidden_size,
                            n_layer=num_layers, n_head=num_heads, n_inner=inner_size, activation_function="gelu_new",
                            resid_pdrop=0.0, embd_pdrop=embedding_dropout, attn_pdrop=attention_dropout,
                            layer_norm_epsilon=1e-12, initializer_range=0.02,
                            bos_token_id=None, eos_token_id=None)
        self.backbone = GPT2Model(config)
        self.heads = nn.ModuleList(ResidualHead(hidden_size) for _ in range(n_digits))

    def token_embeddings(self) -> torch.Tensor:
        """L2-normalised token embeddings per digit ``[m, K, d]`` (padding left out)."""
        weights = self.backbone.wte.weight[1:].reshape(self.n_digits, self.codebook_size, -1)
        return F.normalize(weights, dim=-1)

    def digit_states(self, items: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, L, m, d]``: the normalised state of every digit at every position (items are
        catalogue index + 1, 0 = padding, right-padded)."""
        inputs = self.backbone.wte(self.item_tokens[items]).mean(dim=2)
        hidden = self.backbone(inputs_embeds=inputs, attention_mask=attention_mask).last_hidden_state
        return F.normalize(torch.stack([head(hidden) for head in self.heads], dim=2), dim=-1)

    def forward(self, items: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Multi-token prediction loss over the labelled positions (labels are item rows, IGNORED elsewhere)."""
        states = self.digit_states(items, attention_mask)
        chosen = labels != IGNORED
        states = states[chosen]  # [P, m, d]
        targets = self.item_tokens[labels[chosen]] - 1 - torch.arange(self.n_digits, device=labels.device) * \
            self.codebook_size  # [P, m] codes within each digit
        logits = torch.einsum("pmd,mkd->pmk", states, self.token_embeddings().to(states.dtype)) / self.temperature
        return F.cross_entropy(logits.reshape(-1, self.codebook_size).float(), targets.reshape(-1))

    @torch.no_grad()
    def token_log_probabilities(self, items: torch.Tensor, attention_mask: torch.Tensor,
                                lengths: torch.Tensor) -> torch.Tensor:
        """``[B, m * K]``: each digit's log-softmax over its codes at the last history position,
        digits side by side (code ``c`` of digit ``d`` at ``d * K + c``)."""
        states = self.digit_states(items, attention_mask)
        last = states[torch.arange(len(items), device=items.device), lengths - 1]  # [B, m, d]
        logits = torch.einsum("bmd,mkd->bmk", last, self.token_embeddings().to(last.dtype)) / self.temperature
        return F.log_softmax(logits.float(), dim=-1).reshape(len(items), -1)

    def item_codes(self) -> torch.Tensor:
        """``[n_items, m]``: each item's flat index into :meth:`token_log_probabilities`' rows."""
        return self.item_tokens[1:] - 1
