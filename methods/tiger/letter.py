"""LETTER's regularisers of the RQ-VAE (Wang et al., "Learnable Item Tokenization for
Generative Recommendation", CIKM 2024, arXiv 2405.07314, §3.1), added to TIGER's RQ-VAE loss:

- **Collaborative regularisation**: an in-batch contrastive loss between each item's quantised
  latent and its collaborative embedding (a SASRec's item embedding, as large as the latent).
  Item i's quantised latent scores every CF embedding of the batch by inner product; the loss is
  the cross-entropy of picking item i's own (no temperature, no normalisation, as released).
  The quantised latent is the straight-through one, so this term trains the encoder.
- **Diversity regularisation**: the code embeddings of each level are clustered into a few
  groups (refreshed once per epoch); for each item, the code it chose scores every other code of
  its level by inner product and the loss is the cross-entropy of a random code of the chosen
  code's own group. Codes of one group are pulled together and away from the other groups,
  which spreads the items over the codebook (LETTER's "code assignment bias").

Total: RQ-VAE loss + ``cf_weight`` x collaborative + ``diversity_weight`` x (mean over levels of
the diversity terms), the weighting of the authors' released tokenizer (HonghuiBao2000/LETTER,
``RQ-VAE/``), which these losses follow. Where this differs from that code: groups come from
k-means++ and Lloyd's iterations (:func:`methods.tiger.rqvae.kmeans`), not size-constrained
k-means (groups of 10 to 60 codes), so a code can be alone in its group; such a code has no
positive and its items add no diversity term.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class LetterSettings:
    cf_weight: float = 0.1
    diversity_weight: float = 1e-4
    clusters: int = 10


def collaborative_loss(quantized: "torch.Tensor", cf_embeddings: "torch.Tensor") -> "torch.Tensor":
    """§3.1 collaborative regularisation: row i of ``quantized`` must pick row i of
    ``cf_embeddings`` among the batch's (softmax over inner products)."""
    import torch
    import torch.nn.functional as F

    logits = quantized @ cf_embeddings.T
    return F.cross_entropy(logits, torch.arange(len(quantized), device=quantized.device))


def code_groups(codebooks: "torch.Tensor", clusters: int, generator: "torch.Generator") -> "torch.Tensor":
    """The group of every code, per level (``[levels, codebook_size]``), by k-means of that
    level's code embeddings."""
    import torch

    from methods.tiger.kmeans import kmeans

    groups = []
    with torch.no_grad():
        for codebook in codebooks:
            centroids = kmeans(codebook, min(clusters, len(codebook)), generator)
            groups.append(torch.cdist(codebook, centroids).argmin(dim=1))
    return torch.stack(groups)


def diversity_positives(codes: "torch.Tensor", groups: "torch.Tensor",
                        generator: "torch.Generator") -> tuple["torch.Tensor", "torch.Tensor"]:
    """For each item whose chosen code (``codes``) has another code in its group: the item's row
    and a random such code, its positive. Items on a code alone in its group have none."""
    import torch

    same_group = groups[codes].unsqueeze(1) == groups.unsqueeze(0)  # [items, codes]
    not_self = torch.arange(len(groups)).unsqueeze(0) != codes.unsqueeze(1)
    candidates = same_group & not_self
    rows = torch.nonzero(candidates.any(dim=1)).flatten()
    if len(rows) == 0:
        return rows, rows
    return rows, torch.multinomial(candidates[rows].float(), 1, generator=generator).squeeze(1)


def diversity_loss(codebook: "torch.Tensor", codes: "torch.Tensor", groups: "torch.Tensor",
                   generator: "torch.Generator") -> "torch.Tensor":
    """§3.1 diversity regularisation at one level: the chosen code of each item scores every
    other code by inner product, its target a random other code of its group
    (:func:`diversity_positives`). With no item left the term is 0."""
    import torch.nn.functional as F

    rows, positives = diversity_positives(codes, groups, generator)
    if len(rows) == 0:
        return codebook.new_zeros(())
    chosen = codes[rows]
    logits = codebook[chosen] @ codebook.T
    # A code is never its own positive or negative.
    logits = logits.scatter(1, chosen.unsqueeze(1), float("-inf"))
    return F.cross_entropy(logits, positives)


def letter_loss(codebooks: "torch.Tensor", codes: "torch.Tensor", quantized: "torch.Tensor",
                cf_embeddings: "torch.Tensor", groups: "torch.Tensor", settings: LetterSettings,
                generator: "torch.Generator") -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """The weighted sum of both regularisers for one batch, and each term unweighted.
    ``codes``: ``[batch, levels]``; ``cf_embeddings``: the batch's rows, in the same order."""
    import torch

    collaborative = collaborative_loss(quantized, cf_embeddings)
    diversity = torch.stack([diversity_loss(codebooks[level], codes[:, level], groups[level], generator)
                             for level in range(codebooks.shape[0])]).mean()
    return settings.cf_weight * collaborative + settings.diversity_weight * diversity, collaborative, diversity
