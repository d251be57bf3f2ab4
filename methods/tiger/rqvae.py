"""TIGER's RQ-VAE (Rajput et al., NeurIPS 2023, §3.1 and §4.1 "RQ-VAE"): item text
embedding → MLP encoder → residual quantisation over ``levels`` codebooks → MLP decoder.

Sizes and schedule are the paper's (§4.1): a DNN encoder with intermediate layers of 512,
256 and 128 units (ReLU) to a 32-dimensional latent; 3 levels of 256 codes each;
loss = reconstruction + Σ_levels (‖sg[r] − e‖² + β‖r − sg[e]‖²) with β = 0.25; k-means
initialisation of each codebook on the first training batch; Adagrad, learning rate 0.4,
batch 1024, 20k epochs. Then §3.1 "Handling collisions": items that share a code tuple get
one more code (0, 1, 2, ... in item order), so every item's Semantic ID is unique.

Codebook collapse (few codes used, many items sharing a tuple) is what reimplementations
report (EdoardoBotta/RQ-VAE-Recommender #15 and #65; GRID #11 on mapping tuples back to
items). The cures they found are those used here: k-means initialisation (the paper's),
Adagrad rather than Adam-type optimisers, a long enough schedule, watching usage per level;
and, optionally, restarting dead codes from the batch's residuals (SoundStream, Zeghidour
et al. 2021, §3.2), which is not in TIGER and is off in the paper profile.

With ``settings.letter`` set, the same loop adds LETTER's collaborative and diversity
regularisers (:mod:`methods.tiger.letter`) to the loss; the items' collaborative embeddings
are then an input of :func:`train_rqvae`.

This loop is not the engine's ``train_model``: that loop is AdamW with a linear schedule
and a checkpoint and validation ranking per epoch, while the paper's RQ-VAE needs Adagrad,
a k-means step before the first update, code restarts between epochs, and 20k epochs of a
few batches each (a checkpoint per epoch would cost more than the epoch). The RQ-VAE
trains in seconds to minutes, and its result (the codes) is cached by the method instead.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import BenchError
from methods.tiger.kmeans import kmeans
from methods.tiger.letter import LetterSettings

if TYPE_CHECKING:
    import torch

HIDDEN_SIZES = (512, 256, 128)  # §4.1: the encoder's intermediate layers; the decoder mirrors them
ADAGRAD_INITIAL_ACCUMULATOR = 0.1


@dataclasses.dataclass(frozen=True)
class RQVAESettings:
    latent_dim: int = 32
    levels: int = 3
    codebook_size: int = 256
    epochs: int = 20_000
    batch_size: int = 1024
    learning_rate: float = 0.4
    commitment_weight: float = 0.25
    restart_dead_codes: bool = False
    # adagrad: TIGER's (§4.1); adamw: LETTER's released tokenizer's, with this weight decay.
    optimizer: str = "adagrad"
    weight_decay: float = 0.0
    # LETTER's regularisers (methods.tiger.letter); None: TIGER's RQ-VAE loss alone.
    letter: LetterSettings | None = None


@dataclasses.dataclass(frozen=True)
class SemanticIds:
    """``codes[item]``: ``levels`` quantiser codes plus the collision code (last column)."""

    codes: np.ndarray  # [n_items, levels + 1] int64
    report: dict[str, Any]


def _mlp(sizes: list[int]):
    from torch import nn

    layers: list[nn.Module] = []
    for index, (inputs, outputs) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(inputs, outputs))
        if index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def build_rqvae(input_dim: int, settings: RQVAESettings):
    """The RQ-VAE module, its weights drawn from torch's current generator."""
    import torch
    from torch import nn

    class RQVAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = _mlp([input_dim, *HIDDEN_SIZES, settings.latent_dim])
            self.decoder = _mlp([settings.latent_dim, *reversed(HIDDEN_SIZES), input_dim])
            self.codebooks = nn.Parameter(
                torch.randn(settings.levels, settings.codebook_size, settings.latent_dim) * settings.latent_dim ** -0.5)

        def quantize(self, latent: torch.Tensor):
            """Residual quantisation: codes ``[n, levels]``, the quantised latent, the residual
            entering each level (``[levels, n, dim]``) and the codebook + commitment loss."""
            residual, quantized = latent, torch.zeros_like(latent)
            codes, residuals, loss = [], [], latent.new_zeros(())
            for level in range(settings.levels):
                codebook = self.codebooks[level]
                code = torch.cdist(residual.detach(), codebook.detach()).argmin(dim=1)
                chosen = codebook[code]
                # §3.1: ‖sg[r] − e‖² moves the code, β‖r − sg[e]‖² commits the encoder to it.
                loss = loss + ((residual.detach() - chosen) ** 2).mean() \
                    + settings.commitment_weight * ((residual - chosen.detach()) ** 2).mean()
                codes.append(code)
                residuals.append(residual.detach())
                quantized = quantized + chosen
                residual = residual - chosen.detach()
            return torch.stack(codes, dim=1), quantized, torch.stack(residuals), loss

        def forward(self, embeddings: torch.Tensor):
            latent = self.encoder(embeddings)
            codes, quantized, residuals, quantization_loss = self.quantize(latent)
            # Straight-through: the decoder reads the quantised latent, gradients reach the encoder.
            straight_through = latent + (quantized - latent).detach()
            decoded = self.decoder(straight_through)
            reconstruction_loss = ((embeddings - decoded) ** 2).mean()
            return codes, residuals, reconstruction_loss, quantization_loss, straight_through

    return RQVAE()


def _initialise_codebooks(model, embeddings: "torch.Tensor", generator: "torch.Generator") -> None:
    """§4.1: k-means on the first training batch, level by level on that level's residuals."""
    import torch

    with torch.no_grad():
        residual = model.encoder(embeddings)
        for level in range(model.codebooks.shape[0]):
            centroids = kmeans(residual, model.codebooks.shape[1], generator)
            model.codebooks[level].copy_(centroids)
            residual = residual - centroids[torch.cdist(residual, centroids).argmin(dim=1)]


def _restart_dead_codes(model, counts: "torch.Tensor", residuals: "torch.Tensor",
                        generator: "torch.Generator") -> int:
    """Codes no item chose during the epoch restart at residuals of the last batch."""
    import torch

    restarted = 0
    with torch.no_grad():
        for level in range(counts.shape[0]):
            dead = torch.nonzero(counts[level] == 0).flatten()
            if len(dead):
                pick = torch.randint(0, residuals.shape[1], (len(dead),), generator=generator)
                model.codebooks[level, dead] = residuals[level, pick]
                restarted += len(dead)
    return restarted


def _optimizer(model, settings: RQVAESettings):
    import torch

    if settings.optimizer == "adamw":
        # LETTER's released tokenizer. Its regularisers are inner products with no bound, whose
        # gradients are orders larger than the mean-squared losses': under Adagrad's first steps
        # they throw the encoder off its k-means-initialised codebook (measured: one code per
        # level), while Adam's steps stay near the learning rate whatever the gradient's scale.
        return torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    if settings.optimizer != "adagrad":
        raise BenchError(f"TIGER: unknown RQ-VAE optimizer {settings.optimizer!r}; known: adagrad, adamw")
    # The accumulator starts at 0.1, as in TensorFlow/JAX's Adagrad (the paper's framework):
    # from 0, as in torch, the first steps move every weight by the full rate and the
    # codes collapse at once (measured: 1-2 codes per level after 50 steps).
    return torch.optim.Adagrad(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay,
                               initial_accumulator_value=ADAGRAD_INITIAL_ACCUMULATOR)


def train_rqvae(embeddings: np.ndarray, settings: RQVAESettings, seed: int, context: Any,
                cf_embeddings: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Train the RQ-VAE on the item embeddings; the items' quantiser codes ``[n, levels]``
    (without the collision code) and a report of the training. ``cf_embeddings``
    (``[n, latent_dim]``, row i for item i) are needed with ``settings.letter`` only."""
    import torch

    from methods.tiger.letter import code_groups, letter_loss

    data = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    n = data.shape[0]
    letter = settings.letter
    collaborative = None
    if letter is not None:
        if cf_embeddings is None or cf_embeddings.shape != (n, settings.latent_dim):
            found = None if cf_embeddings is None else tuple(cf_embeddings.shape)
            raise BenchError(f"TIGER: tokenizer=letter needs one collaborative embedding of latent_dim "
                             f"{settings.latent_dim} per item ({n}), got shape {found}")
        collaborative = torch.as_tensor(np.asarray(cf_embeddings, dtype=np.float32))
    regulariser_totals = {"cf": 0.0, "diversity": 0.0, "batches": 0}
    batch_size = min(settings.batch_size, n)
    clock = time.perf_counter()
    restarted = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = build_rqvae(data.shape[1], settings)
        optimizer = _optimizer(model, settings)
        bar = context.progress(total=settings.epochs, desc="RQ-VAE", unit="epoch")
        for epoch in range(settings.epochs):
            order = torch.randperm(n, generator=generator)
            counts = torch.zeros(settings.levels, settings.codebook_size, dtype=torch.long)
            groups = None
            for start in range(0, n, batch_size):
                rows = order[start:start + batch_size]
                batch = data[rows]
                if epoch == 0 and start == 0:
                    _initialise_codebooks(model, batch, generator)
                if letter is not None and groups is None:
                    # LETTER §3.1: the code groups are refreshed once per epoch, as released.
                    groups = code_groups(model.codebooks.detach(), letter.clusters, generator)
                codes, residuals, reconstruction, quantization, quantized = model(batch)
                loss = reconstruction + quantization
                if letter is not None:
                    regularisers, cf_term, diversity_term = letter_loss(
                        model.codebooks, codes, quantized, collaborative[rows], groups, letter, generator)
                    loss = loss + regularisers
                    if epoch + 1 == settings.epochs:
                        regulariser_totals["cf"] += float(cf_term.detach())
                        regulariser_totals["diversity"] += float(diversity_term.detach())
                        regulariser_totals["batches"] += 1
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                counts += torch.stack([torch.bincount(codes[:, level], minlength=settings.codebook_size)
                                       for level in range(settings.levels)])
            # With fewer items than codes, unused codes are unavoidable: nothing to restart.
            if settings.restart_dead_codes and n >= settings.codebook_size and epoch + 1 < settings.epochs:
                restarted += _restart_dead_codes(model, counts, residuals, generator)
            bar.update(1)
            if epoch % 50 == 0 or epoch + 1 == settings.epochs:
                bar.set_postfix(reconstruction=f"{reconstruction.item():.4f}", refresh=False)
        bar.close()
        model.eval()
        with torch.no_grad():
            codes, _, reconstruction, quantization, _ = model(data)
    report = {
        "rqvae_epochs": settings.epochs,
        "rqvae_seconds": round(time.perf_counter() - clock, 2),
        "rqvae_reconstruction_loss": round(float(reconstruction), 6),
        "rqvae_quantization_loss": round(float(quantization), 6),
        "rqvae_restarted_codes": restarted,
        "rqvae_optimizer": settings.optimizer,
    }
    if letter is not None:
        batches = max(regulariser_totals["batches"], 1)
        report.update({
            "letter_cf_weight": letter.cf_weight,
            "letter_diversity_weight": letter.diversity_weight,
            "letter_clusters": letter.clusters,
            # Unweighted, averaged over the last epoch's batches.
            "letter_cf_loss": round(regulariser_totals["cf"] / batches, 6),
            "letter_diversity_loss": round(regulariser_totals["diversity"] / batches, 6),
        })
    return codes.numpy().astype(np.int64), report


def random_codes(n_items: int, settings: RQVAESettings, seed: int) -> np.ndarray:
    """§4.4's "Random ID" ablation: codes drawn uniformly, with the RQ-VAE's shape."""
    return np.random.default_rng([seed, 12]).integers(0, settings.codebook_size, size=(n_items, settings.levels))


def add_collision_code(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """§3.1 "Handling collisions": one more code, 0, 1, 2, ... over the items (in item
    order) that share a code tuple; 0 for an item whose tuple is its own."""
    if len(codes) == 0:
        return np.zeros((0, codes.shape[1] + 1), dtype=np.int64)
    _, group, sizes = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    starts = np.cumsum(sizes) - sizes
    within = np.empty(len(codes), dtype=np.int64)
    within[order] = np.arange(len(codes)) - np.repeat(starts, sizes)
    if sizes.max() > codebook_size:
        raise BenchError(f"TIGER: {sizes.max()} items share one semantic ID, more than the {codebook_size} values of "
                         "the collision code (codebook collapse); train the RQ-VAE longer (rqvae_epochs), set "
                         "restart_dead_codes=true, or raise codebook_size")
    return np.concatenate([codes, within[:, None]], axis=1)


def _shared_share(codes: np.ndarray) -> float:
    """The share of items whose code tuple another item shares."""
    if len(codes) == 0:
        return 0.0
    _, sizes = np.unique(codes, axis=0, return_counts=True)
    return round(float(sizes[sizes > 1].sum()) / len(codes), 4)


def code_statistics(codes: np.ndarray, codebook_size: int) -> dict[str, Any]:
    """Codebook usage per level and the collision rate before the collision code, over the whole
    tuple and per level (the tuple's first 1, 2, ... codes)."""
    n_items, levels = codes.shape
    _, sizes = np.unique(codes, axis=0, return_counts=True) if n_items else (None, np.zeros(0, dtype=np.int64))
    used = [int(len(np.unique(codes[:, level]))) for level in range(levels)]
    return {
        "codebook_used": used,
        "codebook_usage": [round(count / codebook_size, 4) for count in used],
        # Items whose tuple another item shares (each needs a collision code above 0 or is the 0 of a group).
        "collision_rate": _shared_share(codes),
        # The same after 1, 2, ... levels: how far down the tuple the items are told apart.
        "collision_rate_per_level": [_shared_share(codes[:, :level + 1]) for level in range(levels)],
        "distinct_tuples": int(len(sizes)),
        "largest_collision_group": int(sizes.max()) if n_items else 0,
    }


def semantic_ids(embeddings: np.ndarray | None, n_items: int, settings: RQVAESettings, mode: str, seed: int,
                 context: Any, cf_embeddings: np.ndarray | None = None) -> SemanticIds:
    """Semantic IDs of every item: RQ-VAE codes (``mode="rqvae"``, LETTER-regularised with
    ``settings.letter`` and ``cf_embeddings``), residual k-means codes (``"rkmeans"``) or random
    ones, plus the collision code."""
    if settings.letter is not None and mode != "rqvae":
        raise BenchError(f"TIGER: LETTER regularises the RQ-VAE; semantic_ids={mode} trains none")
    if mode == "rqvae":
        if embeddings is None or len(embeddings) != n_items:
            raise BenchError("TIGER: semantic_ids=rqvae needs one text embedding per item")
        codes, report = train_rqvae(embeddings, settings, seed, context, cf_embeddings)
    elif mode == "rkmeans":
        from methods.tiger.rkmeans import residual_kmeans_codes

        if embeddings is None or len(embeddings) != n_items:
            raise BenchError("TIGER: semantic_ids=rkmeans needs one text embedding per item")
        codes, report = residual_kmeans_codes(embeddings, settings.levels, settings.codebook_size, seed)
    elif mode == "random":
        codes, report = random_codes(n_items, settings, seed), {}
    else:
        raise BenchError(f"config key 'semantic_ids' must be rqvae, rkmeans or random, got {mode!r}")
    report = {**report, **code_statistics(codes, settings.codebook_size)}
    return SemanticIds(codes=add_collision_code(codes, settings.codebook_size), report=report)
