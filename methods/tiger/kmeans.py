"""Lloyd's k-means with k-means++ seeding on torch tensors: the codebook initialisation of
TIGER's RQ-VAE (§4.1), of LETTER's diversity clusters and of RPG's product quantizer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

KMEANS_ITERATIONS = 25


def kmeans(points: "torch.Tensor", clusters: int, generator: "torch.Generator",
           iterations: int = KMEANS_ITERATIONS) -> "torch.Tensor":
    """Lloyd's k-means with k-means++ seeding; ``clusters`` centroids even when there are
    fewer distinct points (the extra centroids repeat points, and stay unused)."""
    import torch

    n = points.shape[0]
    if n <= clusters:
        extra = torch.randint(0, n, (clusters - n,), generator=generator)
        return torch.cat([points, points[extra]]).clone()
    centroids = points[torch.randint(0, n, (1,), generator=generator)]
    for _ in range(1, clusters):  # k-means++: far points are likelier next centroids
        distance = torch.cdist(points, centroids).min(dim=1).values ** 2
        weights = distance if distance.sum() > 0 else torch.ones_like(distance)
        centroids = torch.cat([centroids, points[torch.multinomial(weights, 1, generator=generator)]])
    for _ in range(iterations):
        assignment = torch.cdist(points, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=clusters).unsqueeze(1)
        # An empty cluster keeps its centroid rather than collapsing to zero.
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids
