"""The zero-shot fusion builder: refuses the target among its sources before reading data,
reads both source formats (OpenP5 folder, RecBole atomic files) into one namespaced corpus,
caps each source's users with a seeded draw, and splits each source as the target is split."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bench.data.dataset import Dataset
from bench.data.fusion import FoundationConfig, build_fusion, check_sources, sample_users
from bench.data.prepare import prepare_dataset
from bench.data.split import leave_one_out, make_split
from bench.errors import BenchError
from tests.conftest import tiny_dataset
from tests.methods.test_unisrec import write_source


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(tmp_path / "cache"))


def write_atomic_source(folder: Path, name: str, seed: int, n_users: int = 30, n_items: int = 24) -> Path:
    """A tiny source as RecBole atomic files with titles, as ``amazon-fusion`` ships them. Its raw
    ids (``u0``, ``i3``) are those of :func:`write_source`'s folders: only namespacing separates them."""
    dataset = tiny_dataset(n_users=n_users, n_items=n_items, seed=seed)
    folder.mkdir(parents=True)
    rows = [f"{dataset.user_ids[user]}\t{dataset.item_ids[item]}\t{1000 * user + position}"
            for user, sequence in enumerate(dataset.sequences) for position, item in enumerate(sequence.tolist())]
    (folder / f"{name}.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    (folder / f"{name}.item").write_text("item_id:token\ttitle:token_seq\n" + "".join(
        f"{item}\t{name} gadget {item}\n" for item in dataset.item_ids))
    return folder


def sources(tmp_path: Path, users: int = 12) -> FoundationConfig:
    return FoundationConfig(foundation_datasets=("health", "books"), foundation_users=users,
                            foundation_data_dirs=(str(write_atomic_source(tmp_path / "health", "health", 1)),
                                                  str(write_source(tmp_path / "books", 2))))


def target(name: str = "toys", folder: Path | None = None) -> Dataset:
    dataset = tiny_dataset(n_users=10, n_items=20, seed=9)
    return dataclasses.replace(dataset, name=name, metadata={**dataset.metadata,
                                                             **({"source": str(folder)} if folder else {})})


@pytest.mark.parametrize("names, data_dirs, message", [
    (("beauty", "toys"), ("nowhere/beauty", "nowhere/toys"), "lists 'toys', the dataset being evaluated"),
    (("beauty", "sports"), ("a",), "1 entries for 2 foundation datasets"),
    (("beauty", "beauty"), (), "names a dataset twice"),
])
def test_bad_sources_are_refused_before_any_data_is_read(names, data_dirs, message) -> None:
    config = FoundationConfig(foundation_datasets=names, foundation_data_dirs=data_dirs, foundation_users=5)
    with pytest.raises(BenchError, match=message):
        build_fusion(config, target(), seed=0)


def test_a_source_reading_the_targets_folder_under_another_name_is_refused(tmp_path: Path) -> None:
    config = sources(tmp_path)
    own_folder = Path(config.foundation_data_dirs[1])
    # The same folder, written another way (a relative path through its parent).
    spelled = dataclasses.replace(config, foundation_data_dirs=(config.foundation_data_dirs[0],
                                                                str(own_folder / ".." / own_folder.name)))
    with pytest.raises(BenchError, match="source 'books' reads .* the folder of the dataset being evaluated"):
        check_sources(spelled, target("toys", own_folder))
    check_sources(config, target("toys", tmp_path / "elsewhere"))  # another folder: accepted


def test_sources_of_both_formats_are_fused_with_namespaced_ids_and_titles_as_text(tmp_path: Path) -> None:
    config = sources(tmp_path, users=100)  # above both sources' 30 users: nobody is dropped
    fusion = build_fusion(config, target(), seed=0)
    health, books = (prepare_dataset(name, Path(folder)) for name, folder
                     in zip(config.foundation_datasets, config.foundation_data_dirs))
    assert health.metadata["format"] == "atomic" and books.metadata["format"] == "openp5"
    # The two folders use the same raw ids; the fusion keeps them apart.
    assert set(health.item_ids) & set(books.item_ids)
    assert len(set(fusion.dataset.item_ids)) == fusion.dataset.n_items == fusion.split.n_items
    assert fusion.dataset.user_ids[:2] == ["health:u0", "health:u1"] and fusion.dataset.user_ids[30] == "books:u0"
    assert {item.split(":")[0] for item in fusion.dataset.item_ids} == {"health", "books"}
    # Item text: the atomic source's titles.
    first = fusion.dataset.item_ids.index(f"health:{health.item_ids[0]}")
    assert fusion.dataset.item_text[first] == f"title: health gadget {health.item_ids[0]}"
    # Each user split as leave-one-out splits a target: training part and validation item; the
    # test item dropped, and out of the catalogue unless another user trains or validates on it.
    offset = 0
    for name, source in (("health", health), ("books", books)):
        split = leave_one_out(source)
        for user in range(source.n_users):
            fused = offset + user
            names = lambda items: [fusion.dataset.item_ids[i] for i in items.tolist()]  # noqa: E731
            assert names(fusion.split.train[fused]) == [f"{name}:{source.item_ids[i]}" for i in split.train[user]]
            assert names(fusion.split.valid_items[fused]) == [f"{name}:{source.item_ids[split.valid_target[user]]}"]
            assert len(fusion.split.test_items[fused]) == 0
        offset += source.n_users
        assert fusion.sources[name]["users"] == fusion.sources[name]["users_before_sampling"] == source.n_users
    held = np.unique(np.concatenate(fusion.split.train + fusion.split.valid_items))
    np.testing.assert_array_equal(held, np.arange(fusion.dataset.n_items))
    trained = np.unique(np.concatenate(fusion.split.train))
    assert sum(facts["validation_only_items"] for facts in fusion.sources.values()) == len(held) - len(trained)
    assert fusion.sources["books"]["data_dir"] == config.foundation_data_dirs[1]


def test_the_per_source_user_cap_is_a_seeded_deterministic_draw(tmp_path: Path) -> None:
    config = sources(tmp_path, users=12)
    first, again = build_fusion(config, target(), seed=5), build_fusion(config, target(), seed=5)
    assert first.dataset.user_ids == again.dataset.user_ids and first.digest() == again.digest()
    assert {name: facts["users"] for name, facts in first.sources.items()} == {"health": 12, "books": 12}
    # Source at position p is drawn with seed + p, from its users in file order.
    books = [user for user in first.dataset.user_ids if user.startswith("books:")]
    expected = sample_users(30, 12, 5 + 1)
    assert books == [f"books:u{user}" for user in expected.tolist()]
    other = build_fusion(config, target(), seed=6)
    assert other.dataset.user_ids != first.dataset.user_ids and other.digest() != first.digest()
    # A cap above a source's size keeps all its users.
    assert len(sample_users(30, 40, 0)) == 30


def test_sources_follow_the_targets_split_protocol(tmp_path: Path) -> None:
    """A target split by the global time cut: the timed (atomic) source is cut the same way."""
    config = FoundationConfig(foundation_datasets=("health",), foundation_users=100,
                              foundation_data_dirs=(str(write_atomic_source(tmp_path / "health", "health", 1)),))
    fusion = build_fusion(config, target(), seed=0, protocol="temporal")
    source, split = make_split(prepare_dataset("health", Path(config.foundation_data_dirs[0])), "temporal")
    assert fusion.split.protocol == "temporal" and fusion.split.n_users == split.n_users
    assert [len(items) for items in fusion.split.valid_items] == [len(items) for items in split.valid_items]
    assert [len(items) for items in fusion.split.train] == [len(items) for items in split.train]
