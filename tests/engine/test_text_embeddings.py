"""The shared item-text embedding layer: the offline encoder, the cache, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.engine import text_embeddings
from bench.engine.text_embeddings import item_text_embeddings, resolve_encoder
from bench.errors import BenchError
from bench.method import RunContext

TEXTS = ["title: red toy car; categories: toys", "title: wooden puzzle; categories: games",
         "title: red toy car; categories: toys"]


@pytest.fixture
def context(tmp_path: Path) -> RunContext:
    return RunContext(tmp_path / "work", seed=0, profile="cpu", show_progress=False)


class CountingEncoder:
    """Stands in for a sentence encoder: a fixed projection of the text's bytes, and a call count."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls, self.fail_after = 0, fail_after

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("encoder died")
        return np.asarray([[len(t), sum(t.encode()) % 97, t.count(" ")] for t in texts], dtype=np.float32)

    def get_embedding_dimension(self) -> int:
        return 3


def test_offline_encoder_from_the_wheel(tmp_path: Path, context: RunContext) -> None:
    embeddings = item_text_embeddings(TEXTS, "cpu", None, tmp_path / "emb", context, batch_size=2)
    assert embeddings.shape == (3, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)  # MiniLM normalises
    np.testing.assert_allclose(embeddings[0], embeddings[2], atol=1e-6)
    assert float(embeddings[0] @ embeddings[1]) < 0.99


def test_quiet_runs_load_the_encoder_without_progress_bars(capfd: pytest.CaptureFixture) -> None:
    from transformers.utils import logging as transformers_logging

    text_embeddings._ENCODERS.clear()  # a real load, not the copy an earlier test left
    encoder = text_embeddings.load_encoder("cpu", "all-MiniLM-L6-v2", show_progress=False)
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()  # switched back on for what follows
    # Loaded once per process: the next call gets the same encoder without loading again.
    assert text_embeddings.load_encoder("cpu", "all-MiniLM-L6-v2") is encoder


def test_cache_is_reused_and_rebuilt_when_text_changes(tmp_path: Path, context: RunContext,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    encoder = CountingEncoder()

    def fake_load(profile: str, name: str, device: str | None = None, show_progress: bool = True) -> CountingEncoder:
        loads.append(name)
        return encoder

    monkeypatch.setattr(text_embeddings, "load_encoder", fake_load)
    cache = tmp_path / "emb"
    first = item_text_embeddings(TEXTS, "cpu", None, cache, context, batch_size=2)
    assert loads == ["all-MiniLM-L6-v2"] and encoder.calls == 2  # batched: 3 texts, batches of 2
    again = item_text_embeddings(TEXTS, "cpu", None, cache, context, batch_size=2)
    assert loads == ["all-MiniLM-L6-v2"] and encoder.calls == 2  # nothing encoded again
    np.testing.assert_array_equal(first, again)

    changed = [TEXTS[0], TEXTS[1] + " (new edition)", TEXTS[2]]
    rebuilt = item_text_embeddings(changed, "cpu", None, cache, context)
    assert len(loads) == 2 and not np.array_equal(rebuilt[1], first[1])
    np.testing.assert_array_equal(rebuilt[0], first[0])
    # Another encoder or profile is another cache entry too; all entries are kept side by side.
    item_text_embeddings(TEXTS, "cpu", "some/local-encoder", cache, context)
    assert len(loads) == 3 and len(list(cache.glob("*.npy"))) == 3
    assert not list(cache.glob(".*tmp"))


def test_a_failed_encoding_leaves_no_cache_file(tmp_path: Path, context: RunContext,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_embeddings, "load_encoder", lambda *_, **__: CountingEncoder(fail_after=1))
    with pytest.raises(RuntimeError):
        item_text_embeddings(TEXTS, "cpu", None, tmp_path / "emb", context, batch_size=2)
    # Only the folder's lock file (bench.shared_artifacts), no cache file and no part of one.
    assert {path.name for path in (tmp_path / "emb").iterdir()} <= {".lock"}


def test_no_silent_fallback(tmp_path: Path, context: RunContext, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # this machine has no hub
    with pytest.raises(BenchError, match="encoder \\(paper profile\\) 'genrec-bench-test/no-such-encoder' is not in "
                                         "the local Hugging Face cache and the hub is off"):
        item_text_embeddings(["x"], "paper", "genrec-bench-test/no-such-encoder", tmp_path, context)
    # The cpu profile never downloads: a hub name must already be cached.
    with pytest.raises(BenchError, match="cpu profile, which does not download"):
        item_text_embeddings(["x"], "cpu", "genrec-bench-test/no-such-encoder", tmp_path, context)
    assert not list(tmp_path.glob("*.npy"))


def test_encoder_resolution() -> None:
    assert resolve_encoder("paper", None) == "sentence-transformers/sentence-t5-base"
    assert resolve_encoder("cpu", None) == "all-MiniLM-L6-v2"
    assert resolve_encoder("cpu", "bert-base-uncased") == "bert-base-uncased"
    with pytest.raises(BenchError, match="unknown profile 'gpu'"):
        resolve_encoder("gpu", None)
