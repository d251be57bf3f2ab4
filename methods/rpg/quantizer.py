"""RPG's long semantic IDs: optimised product quantisation (OPQ) of item text embeddings
(Hou et al., KDD 2025, arXiv 2506.05781; the paper's long semantic ID construction).

The text embeddings are reduced by a whitened PCA (fitted on all items), centred, then
rotated by an orthogonal matrix and cut into ``n_digits`` sub-vectors; each sub-vector is
quantised by its own codebook of ``codebook_size`` centroids. The rotation and the
codebooks are learned on the items of the training sequences by alternating k-means and an
orthogonal Procrustes step (OPQ, Ge et al., CVPR 2013); every item is then encoded. The
digits are independent of each other, so an ID is an unordered set of ``n_digits`` tokens.

The authors run faiss (``OPQ{m},IVF1,PQ{m}x8``); faiss is not a dependency here, so the same
steps are written with torch. Items whose codes coincide (identical texts, tiny catalogues)
are made distinct by moving one digit of the later item to the nearest free alternative
centroid, the cheapest change in distortion: an ID names one item.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bench.errors import BenchError


@dataclasses.dataclass(frozen=True)
class QuantizerSettings:
    n_digits: int
    codebook_size: int
    pca_dim: int
    opq_iterations: int
    kmeans_iterations: int


def _subvectors(points: "torch.Tensor", n_digits: int) -> "torch.Tensor":
    return points.reshape(points.shape[0], n_digits, -1).transpose(0, 1)  # [m, n, d/m]


def _assign(sub: "torch.Tensor", codebooks: "torch.Tensor") -> "torch.Tensor":
    import torch

    return torch.cdist(sub, codebooks).argmin(dim=2)  # [m, n]


def _lloyd(sub: "torch.Tensor", codebooks: "torch.Tensor", iterations: int) -> "torch.Tensor":
    """k-means steps for every digit at once (``sub`` ``[m, n, d]``, ``codebooks`` ``[m, K, d]``)."""
    import torch

    for _ in range(iterations):
        assignment = _assign(sub, codebooks)
        sums = torch.zeros_like(codebooks).scatter_add_(1, assignment[..., None].expand_as(sub), sub)
        counts = torch.zeros(codebooks.shape[:2], dtype=sub.dtype).scatter_add_(
            1, assignment, torch.ones_like(assignment, dtype=sub.dtype))[..., None]
        codebooks = torch.where(counts > 0, sums / counts.clamp(min=1), codebooks)  # an empty code keeps its centroid
    return codebooks


def _reconstruct(codes: "torch.Tensor", codebooks: "torch.Tensor") -> "torch.Tensor":
    import torch

    parts = torch.gather(codebooks, 1, codes[..., None].expand(-1, -1, codebooks.shape[2]))  # [m, n, d/m]
    return parts.transpose(0, 1).reshape(codes.shape[1], -1)


def train_opq(points: np.ndarray, settings: QuantizerSettings, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotation ``[D, D]`` and codebooks ``[m, K, D/m]`` learned on ``points`` ``[n, D]``."""
    import torch

    from methods.tiger.kmeans import kmeans

    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(points, dtype=torch.float32)
    rotation = torch.eye(x.shape[1])
    sub = _subvectors(x, settings.n_digits)
    codebooks = torch.stack([kmeans(sub[digit], settings.codebook_size, generator, settings.kmeans_iterations)
                             for digit in range(settings.n_digits)])
    for _ in range(settings.opq_iterations):
        rotated = x @ rotation
        sub = _subvectors(rotated, settings.n_digits)
        codebooks = _lloyd(sub, codebooks, settings.kmeans_iterations)
        target = _reconstruct(_assign(sub, codebooks), codebooks)
        # Procrustes: the orthogonal R minimising ||x R - target|| is U V^T of svd(x^T target).
        left, _, right = torch.linalg.svd(x.T @ target)
        rotation = left @ right
    codebooks = _lloyd(_subvectors(x @ rotation, settings.n_digits), codebooks, settings.kmeans_iterations)
    return rotation.numpy(), codebooks.numpy()


def encode(points: np.ndarray, rotation: np.ndarray, codebooks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[n, m]`` and the squared distance of every sub-vector to every centroid ``[n, m, K]``."""
    import torch

    sub = _subvectors(torch.as_tensor(points, dtype=torch.float32) @ torch.as_tensor(rotation),
                      codebooks.shape[0])
    distances = torch.cdist(sub, torch.as_tensor(codebooks)) ** 2  # [m, n, K]
    return distances.argmin(dim=2).T.numpy().astype(np.int64), distances.permute(1, 0, 2).numpy()


def make_unique(codes: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes with no two items alike: each later item of a shared code moves one digit to the
    alternative centroid that adds the least distortion and gives a code no item has.
    Returns the codes and the number of items moved."""
    codes = codes.copy()
    taken = {tuple(row) for row in codes.tolist()}
    _, first, counts = np.unique(codes, axis=0, return_index=True, return_counts=True)
    shared = {tuple(codes[index]) for index, count in zip(first, counts) if count > 1}
    seen: set[tuple[int, ...]] = set()
    moved = 0
    for item in range(len(codes)):  # only items of shared codes are touched (rare)
        code = tuple(codes[item].tolist())
        if code not in shared:
            continue
        if code not in seen:
            seen.add(code)
            continue
        extra = distances[item] - distances[item, np.arange(codes.shape[1]), codes[item]][:, None]  # [m, K]
        for flat in np.argsort(extra, axis=None, kind="stable"):
            digit, centroid = divmod(int(flat), distances.shape[2])
            candidate = code[:digit] + (centroid,) + code[digit + 1:]
            if candidate not in taken:
                codes[item, digit] = centroid
                taken.add(candidate)
                moved += 1
                break
        else:
            raise BenchError("rpg: cannot give every item its own semantic ID; raise n_digits or codebook_size")
    return codes, moved


def semantic_ids(embeddings: np.ndarray, training_items: np.ndarray, settings: QuantizerSettings,
                 seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Unique codes ``[n_items, n_digits]`` of every item, and facts for the record."""
    from sklearn.decomposition import PCA

    from methods.tiger.rqvae import code_statistics

    n_items, dim = embeddings.shape
    # A catalogue or encoder smaller than pca_dim gives fewer components; zero columns fill
    # the rest (they carry nothing, and keep the digits' sub-vector sizes).
    components = min(settings.pca_dim, dim, n_items)
    reduced = np.zeros((n_items, settings.pca_dim), dtype=np.float32)
    reduced[:, :components] = PCA(n_components=components, whiten=True, random_state=seed).fit_transform(embeddings)
    reduced -= reduced[training_items].mean(axis=0)
    rotation, codebooks = train_opq(reduced[training_items], settings, seed)
    codes, distances = encode(reduced, rotation, codebooks)
    report = {"pca_components": components, "before_deduplication": code_statistics(codes, settings.codebook_size)}
    codes, moved = make_unique(codes, distances)
    report["items_moved_to_unique_codes"] = moved
    report["codebook_used"] = code_statistics(codes, settings.codebook_size)["codebook_used"]
    return codes, report
