"""Checkpoints by name: the cache first, the hub only when allowed and answering, and a quick
clear error otherwise (never minutes of the hub client's retries)."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from bench.engine import hub
from bench.errors import BenchError


class Loader:
    """Stands in for ``from_pretrained``: found in the cache or not, and what it was asked."""

    def __init__(self, cached: bool) -> None:
        self.cached, self.calls = cached, []

    def __call__(self, local_only: bool) -> str:
        self.calls.append(local_only)
        if local_only and not self.cached:
            raise OSError("not in the cache")
        return "model"


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    monkeypatch.setattr(hub, "hub_reachable", lambda endpoint: asked.append(endpoint) or False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return asked


def test_a_cached_checkpoint_loads_without_asking_the_hub(probes):
    load = Loader(cached=True)
    assert hub.load_cached_or_hub(load, "t5-small", "the model of checkpoint") == "model"
    assert load.calls == [True] and probes == []


def test_an_unreachable_hub_is_a_clear_error_without_a_download_attempt(probes):
    load = Loader(cached=False)
    with pytest.raises(BenchError, match="'t5-small' is not in the local Hugging Face cache and the hub .* does not "
                                         "answer: download it .*hf download t5-small"):
        hub.load_cached_or_hub(load, "t5-small", "the model of checkpoint")
    assert load.calls == [True] and len(probes) == 1


def test_offline_by_environment_or_by_the_caller_never_asks_the_hub(probes, monkeypatch):
    with pytest.raises(BenchError, match="not in the local Hugging Face cache: download"):
        hub.load_cached_or_hub(Loader(cached=False), "x", "encoder (cpu profile)", offline=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchError, match=r"the hub is off \(HF_HUB_OFFLINE\)"):
        hub.load_cached_or_hub(Loader(cached=False), "x", "the model of checkpoint")
    assert probes == []


def test_a_reachable_hub_is_used_for_what_the_cache_lacks(monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda endpoint: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    load = Loader(cached=False)
    assert hub.load_cached_or_hub(load, "t5-small", "the model of checkpoint") == "model"
    assert load.calls == [True, False]


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 (the http.server name)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_probe_counts_an_http_error_as_an_answer_and_a_refused_connection_as_none():
    hub.hub_reachable.cache_clear()
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert hub.hub_reachable(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert hub.hub_reachable(f"http://127.0.0.1:{server.server_address[1]}")  # asked once per process
    hub.hub_reachable.cache_clear()
    started = time.monotonic()
    assert not hub.hub_reachable(f"http://127.0.0.1:{server.server_address[1]}")  # nothing listens now
    assert time.monotonic() - started < hub.PROBE_TIMEOUT_SECONDS + 1


def test_doctor_reports_the_probe_and_what_the_paper_profile_lacks(probes, monkeypatch, tmp_path):
    from huggingface_hub import constants

    from bench import doctor

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    lines = list(doctor.checkpoint_lines())
    assert "no answer" in lines[0] and probes == [hub.hub_endpoint()]
    assert any("t5-small: NOT CACHED" in line for line in lines)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE is set" in list(doctor.checkpoint_lines())[0]


def test_a_local_folder_that_does_not_load_is_named_as_such_without_asking_the_hub(probes, tmp_path):
    folder = tmp_path / "my-checkpoint"
    folder.mkdir()
    with pytest.raises(BenchError, match=r"'.*my-checkpoint': the local folder cannot be loaded: OSError"):
        hub.load_cached_or_hub(Loader(cached=False), str(folder), "the model of checkpoint")
    assert probes == []
