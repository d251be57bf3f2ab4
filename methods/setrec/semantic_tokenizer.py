"""SETRec's semantic tokenizer: an autoencoder from an item's text embedding to ``n_sem``
continuous semantic tokens (Sec. 3.1.2).

The encoder is an MLP ``text_dim -> hidden_layers... -> d_model * n_sem`` (512-256-128 in
the official code), the decoder its mirror image; ReLU between layers, none after the
last, Xavier-normal weights and zero biases. The latent is cut into ``n_sem`` tokens of the
backbone's hidden size. It is trained jointly with the recommender: the reconstruction
error enters the loss with weight ``alpha`` (Eq. 8).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(size_in, size_out)
        nn.init.xavier_normal_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SemanticAutoencoder(nn.Module):
    def __init__(self, text_dim: int, hidden_layers: Sequence[int], d_model: int, n_sem: int) -> None:
        super().__init__()
        self.n_sem, self.d_model = n_sem, d_model
        sizes = [text_dim, *hidden_layers, d_model * n_sem]
        self.encoder = _mlp(sizes)
        self.decoder = _mlp(sizes[::-1])

    def forward(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Semantic tokens ``[n_sem, n_items, d_model]`` of the given items."""
        latent = self.encoder(text_embeddings)
        return latent.view(len(text_embeddings), self.n_sem, self.d_model).transpose(0, 1)

    def reconstruct(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings ``[n, text_dim]`` decoded from semantic tokens ``[n_sem, n, d_model]``
        (training decodes only the items it reconstructs, not the whole catalogue)."""
        return self.decoder(tokens.transpose(0, 1).reshape(tokens.shape[1], -1))
