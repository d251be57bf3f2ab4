"""LETTER's tokenizer as a TIGER switch: its two regularisers against hand computations, fewer
collisions than TIGER's RQ-VAE on a fixture, its codes kept apart from TIGER's, and its own
table column."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import config as config_module
from bench.errors import BenchError
from bench.method import RunContext
from bench.results import all_records, write_record
from bench.runner import RunRequest, work_dir_for
from bench.tables import table_registry, table_rows
from methods.tiger.letter import LetterSettings, collaborative_loss, diversity_loss, diversity_positives
from methods.tiger.method import TIGER, TIGERConfig
from methods.tiger.rqvae import RQVAESettings, semantic_ids
from tests.test_report import fixture_record


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def test_collaborative_loss_is_in_batch_cross_entropy_by_hand() -> None:
    quantized = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    collaborative = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    logits = quantized @ collaborative.T  # row i scores every item's CF embedding
    by_hand = np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(logits.numpy())])
    assert collaborative_loss(quantized, collaborative).item() == pytest.approx(by_hand, rel=1e-6)


def test_diversity_positives_share_the_group_and_a_lone_code_adds_nothing() -> None:
    generator = torch.Generator().manual_seed(0)
    groups = torch.tensor([0, 0, 0, 1, 2])  # codes 3 and 4 are alone in their group
    codes = torch.tensor([0, 1, 2, 3, 4, 0])
    seen = set()
    for _ in range(50):
        rows, positives = diversity_positives(codes, groups, generator)
        assert rows.tolist() == [0, 1, 2, 5]  # the items on codes 3 and 4 have no positive
        for row, positive in zip(rows.tolist(), positives.tolist()):
            assert positive != codes[row] and groups[positive] == groups[codes[row]]
            seen.add((int(codes[row]), positive))
    assert seen == {(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)}  # every sibling is drawn
    codebook = torch.randn(5, 3, generator=generator)
    assert diversity_loss(codebook, torch.tensor([3, 4]), groups, generator).item() == 0.0
    # One item, one possible positive (code 1): cross-entropy over every code but its own, by hand.
    loss = diversity_loss(codebook, torch.tensor([0]), torch.tensor([0, 0, 1, 2, 3]), generator)
    logits = (codebook[0] @ codebook.T).numpy()
    by_hand = np.log(np.exp(logits[1:]).sum()) - logits[1]
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


def collision_fixture(n_items: int = 128, topics: int = 8, latent_dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Item text embeddings around a few topics, and collaborative embeddings of no structure:
    what the codes must tell apart beyond the text's topics."""
    rng = np.random.default_rng(0)
    text = rng.normal(size=(topics, 32))[rng.integers(0, topics, n_items)] + 0.3 * rng.normal(size=(n_items, 32))
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    return text, rng.normal(size=(n_items, latent_dim)).astype(np.float32)


def test_letter_regularisers_lower_the_collision_rate(tmp_path: Path) -> None:
    """LETTER's RQ-VAE (its released optimizer, AdamW at 1e-3) with and without its two
    regularisers at their default weights: same items, seed and epochs. Measured on this
    fixture: 0.93 of the items share their code tuple without them, 0.51 with them (TIGER's own
    RQ-VAE, Adagrad at 0.4, leaves 0.03: LETTER's optimizer is the slower one at this budget).
    Zero weights make the two runs identical, and this test fails."""
    text, collaborative = collision_fixture()
    context = RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)
    letter = TIGERConfig(tokenizer="letter", latent_dim=8, codebook_size=32, rqvae_epochs=80,
                         rqvae_batch_size=128).rqvae_settings()
    plain = dataclasses.replace(letter, letter=None)
    assert plain.optimizer == letter.optimizer == "adamw"
    rqvae = semantic_ids(text, len(text), plain, "rqvae", 0, context).report
    regularised = semantic_ids(text, len(text), letter, "rqvae", 0, context, collaborative).report
    assert regularised["collision_rate"] < rqvae["collision_rate"] - 0.1, (regularised, rqvae)
    assert len(regularised["collision_rate_per_level"]) == 3
    assert regularised["collision_rate_per_level"][-1] == regularised["collision_rate"]
    assert regularised["letter_cf_loss"] > 0 and "letter_cf_loss" not in rqvae


def test_letter_needs_collaborative_embeddings_as_wide_as_the_latent(tmp_path: Path) -> None:
    text, collaborative = collision_fixture()
    context = RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)
    settings = RQVAESettings(latent_dim=4, codebook_size=16, epochs=1, batch_size=128, optimizer="adamw",
                             learning_rate=1e-3, letter=LetterSettings())
    with pytest.raises(BenchError, match="latent_dim 4 per item"):
        semantic_ids(text, len(text), settings, "rqvae", 0, context, collaborative)


def test_config_checks() -> None:
    with pytest.raises(BenchError, match="'tokenizer' is letter.*semantic_ids=rqvae, got rkmeans"):
        TIGERConfig(tokenizer="letter", semantic_ids="rkmeans")
    with pytest.raises(BenchError, match="'letter_cf_weight' must be 0 or more"):
        TIGERConfig(letter_cf_weight=-1.0)
    with pytest.raises(BenchError, match="'letter_clusters' must be at least 1"):
        TIGERConfig(letter_clusters=0)
    with pytest.raises(BenchError, match="must be one of rqvae, letter"):
        config_module.resolve("tiger", TIGERConfig, TIGER.profiles, "cpu", {}, {"tokenizer": "lettre"})
    assert TIGERConfig().rqvae_settings().letter is None and TIGERConfig().rqvae_settings().optimizer == "adagrad"
    letter = TIGERConfig(tokenizer="letter").rqvae_settings()
    assert letter.letter == LetterSettings() and (letter.optimizer, letter.learning_rate) == ("adamw", 1e-3)


def test_letter_and_rqvae_codes_never_share_a_work_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The codes live in the run's work folder; a LETTER run never lands in a plain run's
    folder (not even through the fallback to folders made before the switch existed)."""
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(tmp_path))

    def folder(sets: dict[str, str]) -> Path:
        request = RunRequest(method="tiger", dataset="demo", sets=sets)
        resolved = config_module.resolve("tiger", TIGERConfig, TIGER.profiles, "cpu", {}, sets)
        return work_dir_for(request, resolved, "digest")

    plain = folder({})
    plain.mkdir(parents=True)
    assert folder({"tokenizer": "rqvae"}) == plain  # the default: runs made before the switch keep theirs
    assert folder({"tokenizer": "letter"}) != plain
    assert folder({"tokenizer": "letter"}) != folder({"tokenizer": "letter", "letter_cf_weight": "0.01"})


def test_stored_codes_of_the_other_tokenizer_are_refused(tmp_path: Path) -> None:
    import io
    import json

    from bench.storage import atomic_write_bytes
    from methods.tiger.method import CODES_FILE

    buffer = io.BytesIO()
    np.savez(buffer, codes=np.zeros((3, 4), dtype=np.int64), report=np.asarray(json.dumps({"collision_rate": 0.0})))
    atomic_write_bytes(tmp_path / CODES_FILE, buffer.getvalue())
    method = TIGER(TIGERConfig(tokenizer="letter"), RunContext(work_dir=tmp_path, seed=0, profile="cpu",
                                                               show_progress=False))
    with pytest.raises(BenchError, match="holds codes of tokenizer=rqvae, this run trains tokenizer=letter"):
        method._semantic_ids(None)


def test_letter_runs_fill_their_own_column_not_tigers(tmp_path: Path) -> None:
    results = tmp_path / "results"
    # A TIGER record made before the switch existed has no 'tokenizer' key: it is TIGER's own.
    write_record(results, fixture_record("tiger", 42, 0.2, 1, {"semantic_ids": "rqvae"}))
    write_record(results, fixture_record("tiger", 42, 0.4, 2, {"semantic_ids": "rqvae", "tokenizer": "letter"}))
    spec = table_registry().get("standard")[0]
    labels = [column.label for column in spec.columns]
    cells = next(cells for _, metric, cells, _ in table_rows(spec, all_records(results)) if metric == "HR@10")
    tiger, letter = cells[labels.index("TIGER")], cells[labels.index("TIGER+LETTER")]
    assert "tokenizer" not in tiger.record["config"]["method"]
    assert letter.record["config"]["method"]["tokenizer"] == "letter" and letter.value > tiger.value
