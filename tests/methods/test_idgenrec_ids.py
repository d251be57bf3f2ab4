"""IDGenRec's ID generation: Algorithm 1 with fake generators, the ID generator's
candidate handling and warm start, and the user-ID leak guard."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.dataset import build_dataset
from bench.data.split import leave_one_out
from bench.errors import BenchError
from bench.method import RunContext
from bench.runtime import cpu_runtime
from methods.idgenrec.diverse_ids import generate_unique_ids, paper_schedule
from methods.idgenrec.generator import (IDGeneratorConfig, build_id_generator, clean_id, warm_start,
                                        warm_start_target)
from methods.idgenrec.user_ids import generate_user_ids, user_id_texts


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


# ---- Algorithm 1 with fake generators -------------------------------------------------

class RepeatingGenerator:
    """Repeats the text itself at lambda <= 3 of the short range; one new ID per higher
    lambda (4..10) of the short range and one per lambda of the long range."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float, int, int]] = []

    def __call__(self, texts, diversity_penalty, min_length, max_length):
        self.calls.append((len(texts), diversity_penalty, min_length, max_length))
        if max_length == 10:
            if diversity_penalty <= 3:
                return [[text, text] for text in texts]
            return [[text, f"{text} v{diversity_penalty:g}"] for text in texts]
        return [[f"{text} long {diversity_penalty:g}"] for text in texts]


def test_repeating_generator_climbs_lambda_then_the_longer_range_with_exact_counts() -> None:
    fake = RepeatingGenerator()
    result = generate_unique_ids(fake, ["x"] * 20, batch_size=8)
    # Item 0 at the first try; items 1..7 at lambda 4..10; items 8..17 in the long range
    # at lambda 1..10; items 18 and 19 by the last resort.
    assert result.ids[0] == "x"
    assert result.ids[1:8] == [f"x v{penalty}" for penalty in range(4, 11)]
    assert result.ids[8:18] == [f"x long {penalty}" for penalty in range(1, 11)]
    assert result.ids[18:] == ["x long 10 2", "x long 10 3"]
    stats = result.stats
    assert (stats.n_items, stats.first_try, stats.needed_higher_penalty, stats.needed_longer_range,
            stats.needed_last_resort) == (20, 1, 19, 12, 2)
    assert list(stats.resolved_per_level.values()) == [1, 0, 0] + [1] * 7 + [1] * 10
    assert stats.to_dict()["share_needed_longer_range"] == 0.6
    # Every level decodes exactly the items still pending, in batches of 8.
    pending = [20] + [19] * 3 + list(range(18, 12, -1)) + list(range(12, 2, -1))
    expected_calls = []
    for level, count in zip(paper_schedule(), pending):
        expected_calls += [(min(8, count - start), level.diversity_penalty, level.min_length, level.max_length)
                           for start in range(0, count, 8)]
    assert fake.calls == expected_calls
    assert [fake.calls[i][1] for i in (0, 3, 6)] == [1.0, 2.0, 3.0]


def test_the_level_ends_when_every_item_has_an_id() -> None:
    fake = RepeatingGenerator()
    result = generate_unique_ids(fake, ["a", "b", "c"], batch_size=2)
    assert result.ids == ["a", "b", "c"]
    assert len(fake.calls) == 2 and result.stats.needed_higher_penalty == 0


def colliding_generator(texts, diversity_penalty, min_length, max_length):
    """Deterministic per (text, level), batch-independent, from a small word pool."""
    pool = [f"w{n}" for n in range(12)]
    output = []
    for text in texts:
        rng = random.Random(f"{text}|{diversity_penalty}|{min_length}")
        width = 1 if max_length <= 10 else 3
        output.append([" ".join(rng.choice(pool) for _ in range(width)) for _ in range(10)])
    return output


def test_every_item_of_a_heavily_colliding_catalogue_gets_a_unique_id() -> None:
    texts = [f"text {n % 25}" for n in range(500)]  # 25 distinct texts for 500 items
    result = generate_unique_ids(colliding_generator, texts, batch_size=64)
    assert len(result.ids) == 500 and len(set(result.ids)) == 500
    assert all(identifier.strip() == identifier and identifier for identifier in result.ids)
    stats = result.stats
    # One-word IDs: at most 12 exist, so the rest needed higher lambda or longer IDs.
    assert stats.first_try <= 12 and stats.needed_longer_range >= 500 - 12
    assert sum(stats.resolved_per_level.values()) + stats.needed_last_resort == 500
    assert stats.needed_higher_penalty == 500 - stats.first_try


@pytest.mark.parametrize("batch_size", [1, 7, 500])
def test_batch_size_does_not_change_the_ids(batch_size: int) -> None:
    texts = [f"text {n % 25}" for n in range(500)]
    reference = generate_unique_ids(colliding_generator, texts, batch_size=64)
    result = generate_unique_ids(colliding_generator, texts, batch_size=batch_size)
    assert result.ids == reference.ids and result.levels == reference.levels
    assert result.stats.resolved_per_level == reference.stats.resolved_per_level


def test_empty_and_whitespace_candidates_are_never_ids() -> None:
    result = generate_unique_ids(lambda texts, *_: [["", "  ", " a  b "] for _ in texts], ["t", "u"])
    assert result.ids[0] == "a b" and result.ids[1] == "a b 2"
    nothing = generate_unique_ids(lambda texts, *_: [[] for _ in texts], ["t"], max_diversity_penalty=1)
    assert nothing.ids == ["item 2"] and nothing.stats.needed_last_resort == 1


def test_bad_generator_output_and_settings_are_errors() -> None:
    with pytest.raises(BenchError, match="returned 1 candidate lists for 2 texts"):
        generate_unique_ids(lambda texts, *_: [["a"]], ["t", "u"])
    with pytest.raises(BenchError, match="batch_size"):
        generate_unique_ids(colliding_generator, ["t"], batch_size=0)
    with pytest.raises(BenchError, match="length range"):
        generate_unique_ids(colliding_generator, ["t"], length_ranges=((5, 2),))


# ---- the ID generator -----------------------------------------------------------------

def test_warm_start_target_is_the_first_content_words_of_the_title() -> None:
    assert warm_start_target("title: The Cat in the Hat (Dr. Seuss) Plush; brand: X", 4) == "cat hat dr seuss"
    assert warm_start_target("brand: Lego; title: Star Wars: Clone Wars set", 6) == "star wars clone wars set"
    assert warm_start_target("name: Joe's Pizza; city: Boston", 3) == "joe pizza"
    assert warm_start_target("categories: Toys & Games, Puzzles", 2) == "toys games"
    assert warm_start_target("title: it", 3) == "it" and warm_start_target("title: ...", 3) == ""
    assert clean_id("Hasbro's, Tags:  FUN_toy") == "hasbro s tags fun toy"


CATALOGUE = [f"title: {a} {b} {c}; brand: maker {n % 4}" for n, (a, b, c) in enumerate(
    [(a, b, c) for a in ("red", "blue", "green", "pink") for b in ("plush", "train", "puzzle", "doll")
     for c in ("set", "kit")])]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from bench.engine.tokenizer import train_cpu_tokenizer

    # The words alone, repeated, so that SentencePiece keeps whole words as pieces.
    words = sorted({word for text in CATALOGUE for word in text.replace(";", " ").split()})
    return train_cpu_tokenizer(CATALOGUE + words * 5, tmp_path_factory.mktemp("tokenizer"), vocab_size=60, seed=0)


def small_config(**changes) -> IDGeneratorConfig:
    values = dict(generator_d_model=32, generator_d_ff=64, generator_num_layers=1, generator_num_heads=4,
                  generator_warm_start_min_steps=0,
                  id_num_groups=4, id_max_diversity_penalty=2, id_length_range=(1, 4),
                  id_longer_length_range=(4, 6), id_batch_size=8)
    values.update(changes)
    return IDGeneratorConfig(**values)


def test_candidates_are_ranked_per_token_cleaned_and_distinct(tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.engine.diverse_beam_search as engine

    generator = build_id_generator(small_config(), "cpu", tokenizer, seed=0, runtime=cpu_runtime())

    def row(text: str, per_token: float) -> tuple[tuple[int, ...], float]:
        tokens = tuple(tokenizer(text, add_special_tokens=False).input_ids)
        return tokens, per_token * (len(tokens) + 1)  # EOS counts as a token

    rows = [[row("red", -1.5), row("red; plush:", -1.1), row("blue", -2.5), row("red", -2.0), row("!", -0.1)]]
    monkeypatch.setattr(engine, "diverse_beam_search", lambda *args, **kwargs: rows)
    # The second "red" is a duplicate; "!" cleans to nothing.
    assert generator.candidates(["title: x"], 1.0, 1, 10) == [["red plush", "red", "blue"]]


def test_candidates_of_a_real_model_respect_k_and_length(tokenizer) -> None:
    generator = build_id_generator(small_config(), "cpu", tokenizer, seed=0, runtime=cpu_runtime())
    batch = generator.candidates(CATALOGUE[:3], 1.0, 4, 6)
    assert len(batch) == 3
    for candidates in batch:
        assert 1 <= len(candidates) <= 4 and len(set(candidates)) == len(candidates)
        assert all(candidate == clean_id(candidate) for candidate in candidates)


def test_untrained_generator_gives_a_unique_id_to_every_item(tokenizer) -> None:
    generator = build_id_generator(small_config(), "cpu", tokenizer, seed=1, runtime=cpu_runtime())
    result = generator.unique_ids(CATALOGUE + CATALOGUE[:8])  # 8 exact duplicates of texts
    assert len(set(result.ids)) == len(CATALOGUE) + 8


def test_warm_start_teaches_the_title_words_and_resumes(tokenizer, tmp_path: Path) -> None:
    config = small_config(generator_warm_start_epochs=20, generator_warm_start_words=3,
                          generator_warm_start_batch_size=8, generator_learning_rate=3e-3,
                          generator_d_model=64, generator_d_ff=128)
    generator = build_id_generator(config, "cpu", tokenizer, seed=0, runtime=cpu_runtime())
    context = RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)
    report = warm_start(generator, CATALOGUE, context)
    assert report is not None and report.resumed_from_epoch == 0
    best = [candidates[0] for candidates in generator.candidates(CATALOGUE, 1.0, 1, 10)]
    targets = [warm_start_target(text, 3) for text in CATALOGUE]
    assert sum(b == t for b, t in zip(best, targets)) >= 0.8 * len(CATALOGUE)
    again = build_id_generator(config, "cpu", tokenizer, seed=0, runtime=cpu_runtime())
    assert warm_start(again, CATALOGUE, context).resumed_from_epoch == 20
    assert [c[0] for c in again.candidates(CATALOGUE, 1.0, 1, 10)] == best
    untrained = build_id_generator(small_config(generator_warm_start_epochs=0), "cpu", tokenizer, seed=0,
                                   runtime=cpu_runtime())
    assert warm_start(untrained, CATALOGUE, context) is None


def test_paper_generator_that_cannot_be_loaded_offline_is_an_error(tokenizer, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = IDGeneratorConfig(generator_checkpoint=str(tmp_path / "missing"))
    with pytest.raises(BenchError, match="generator_checkpoint"):
        build_id_generator(config, "paper", tokenizer, seed=0, runtime=cpu_runtime())


def test_bad_generator_config_is_an_error() -> None:
    with pytest.raises(BenchError, match="id_length_range"):
        IDGeneratorConfig(id_length_range=(3,))
    with pytest.raises(BenchError, match="generator_num_heads"):
        IDGeneratorConfig(generator_d_model=30, generator_num_heads=4)


# ---- user IDs: only the items a phase may see -----------------------------------------

def leak_dataset():
    """Each user's validation and test items carry a marker word found nowhere else."""
    sequences, text = [], {}
    for user in range(6):
        shared = [f"common{(user + step) % 5}" for step in range(user % 3 + 2)]
        valid_item, test_item = f"valid{user}", f"test{user}"
        sequences.append((f"u{user}", shared + [valid_item, test_item]))
        text[valid_item] = f"title: toy zebravalid{user}; brand: acme"
        text[test_item] = f"title: toy zebratest{user}; brand: acme"
    text.update({f"common{n}": f"title: common toy {n}" for n in range(5)})
    return build_dataset("leak", sequences, text, {}, {"format": "test"})


def test_user_id_texts_never_contain_the_phase_target() -> None:
    dataset = leak_dataset()
    split = leave_one_out(dataset)
    valid_texts = user_id_texts(split, dataset, "valid")
    test_texts = user_id_texts(split, dataset, "test")
    for user in range(dataset.n_users):
        assert f"zebratest{user}" not in valid_texts[user] and f"zebravalid{user}" not in valid_texts[user]
        assert f"zebratest{user}" not in test_texts[user]
        # The validation item is visible when predicting the test item.
        assert f"zebravalid{user}" in test_texts[user]
        assert "common toy" in valid_texts[user]


def test_user_id_generation_feeds_the_generator_visible_items_only() -> None:
    dataset, seen = leak_dataset(), []

    def recording(texts, *_):
        seen.extend(texts)
        return [[f"user {len(seen) - len(texts) + n}"] for n in range(len(texts))]

    split = leave_one_out(dataset)
    result = generate_user_ids(recording, split, dataset, "test", batch_size=4)
    assert len(set(result.ids)) == dataset.n_users and len(seen) == dataset.n_users
    assert not any(f"zebratest{user}" in text for text in seen for user in range(dataset.n_users))


def test_user_id_texts_keep_the_most_recent_items_and_reject_bad_phases() -> None:
    dataset = leak_dataset()
    split = leave_one_out(dataset)
    last_only = user_id_texts(split, dataset, "test", max_items=1)
    assert last_only == [dataset.item_text[int(split.valid_target[u])] for u in range(dataset.n_users)]
    history = split.train[0]
    assert user_id_texts(split, dataset, "valid")[0].split("; title: ")[0] == dataset.item_text[int(history[0])]
    with pytest.raises(BenchError, match="unknown phase 'train'"):
        user_id_texts(split, dataset, "train")  # type: ignore[arg-type]
    assert np.all(split.test_target != split.valid_target)
