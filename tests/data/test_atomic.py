"""RecBole atomic files: reading, ordering, item text, options, published splits, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import DataConfig
from bench.data.prepare import dataset_messages, prepare_dataset
from bench.data.split import make_split
from bench.errors import BenchError
from bench.results import read_record

PROJECT = Path(__file__).resolve().parents[2]
HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
# u1's rows are out of time order, two of them tie at 300 (file order must win: b then c).
ROWS = ["u1\td\t5\t400", "u1\ta\t4\t100", "u1\tb\t2\t300", "u1\tc\t5\t300", "u2\ta\t5\t50", "u2\tc\t3\t60",
        "u2\te\t5\t70", "u3\tb\t1\t10", "u3\td\t5\t20", "u3\ta\t5\t30"]
ITEMS = ["item_id:token\ttitle:token_seq\tbrand:token\tprice:float", "a\tred kite\tAcme\t3.5",
         "b\tblue ball\tBolt\t2", "c\tgreen car\t\t1", "d\tyellow duck\tAcme\t4", "e\tpurple egg\tBolt\t1",
         "zz\tnobody bought this\tAcme\t9", "yy\tnor this\tBolt\t9"]


def write_folder(folder: Path, inter: list[str] | None = None, items: list[str] | None = None, name: str = "shop",
                 header: str = HEADER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter").write_text("\n".join([header] + (ROWS if inter is None else inter)) + "\n")
    if items is not False:
        (folder / f"{name}.item").write_text("\n".join(ITEMS if items is None else items) + "\n")
    return folder


def sequence(dataset, user: str) -> list[str]:
    return [dataset.item_ids[i] for i in dataset.sequences[dataset.user_ids.index(user)]]


def test_sequences_are_time_ordered_stably_with_ties_counted(tmp_path):
    dataset = prepare_dataset("shop", write_folder(tmp_path / "shop"))
    assert sequence(dataset, "u1") == ["a", "b", "c", "d"]  # b before c: tie at 300 keeps file order
    assert sequence(dataset, "u2") == ["a", "c", "e"]
    assert dataset.timestamps[dataset.user_ids.index("u1")].tolist() == [100, 300, 300, 400]
    assert dataset.metadata["timestamp_ties"] == 1 and dataset.metadata["users_with_timestamp_ties"] == 1
    assert dataset.metadata["order"] == "timestamp (stable sort)"
    assert dataset.metadata["user_dataset"] is True and len(dataset.metadata["files_fingerprint"]) == 16


def test_item_text_is_assembled_from_text_fields_and_unknown_items_are_counted(tmp_path):
    dataset = prepare_dataset("shop", write_folder(tmp_path / "shop"))
    text = dict(zip(dataset.item_ids, dataset.item_text))
    assert text["a"] == "title: red kite; brand: Acme"  # the float field (price) is not text
    assert text["c"] == "title: green car"  # an empty field is left out
    assert dataset.metadata["item_file_unknown_items"] == 2
    assert any("2 items named here occur in no interaction" in line for line in dataset_messages(dataset))


def test_without_timestamps_file_order_is_the_sequence_order(tmp_path):
    rows = ["u1\td", "u1\ta", "u1\tb", "u2\tc", "u2\ta", "u2\tb"]
    dataset = prepare_dataset("shop", write_folder(tmp_path / "shop", rows, False, header="user_id:token\titem_id:token"))
    assert sequence(dataset, "u1") == ["d", "a", "b"] and dataset.timestamps is None
    with pytest.raises(BenchError, match="no timestamps; eval.protocol=temporal needs them"):
        make_split(dataset, "temporal")


def test_rating_threshold_and_k_core_are_options(tmp_path):
    folder = write_folder(tmp_path / "shop")
    full = prepare_dataset("shop", folder)
    assert full.n_interactions == len(ROWS) - 0  # defaults keep every interaction (u-lengths >= 3)
    liked = prepare_dataset("shop", folder, DataConfig(rating_threshold=4))
    assert sequence(liked, "u1") == ["a", "c", "d"] and liked.metadata["dropped_below_rating_threshold"] == 3
    assert "u3" not in liked.user_ids  # two liked items left: too short for leave-one-out, dropped and counted
    cored = prepare_dataset("shop", folder, DataConfig(k_core=2))
    # e has one interaction and goes; every user and item left has two or more.
    assert "e" not in cored.item_ids and cored.metadata["k_core"] == {"k": 2, "rounds": 1, "interactions_left": 9}
    assert "u2" not in cored.user_ids and cored.metadata["dropped_users_fewer_than_3"] == 1  # a, c left
    assert [sequence(cored, user) for user in cored.user_ids] == [["a", "b", "c", "d"], ["b", "d", "a"]]
    with pytest.raises(BenchError, match="no interaction is left after filtering"):
        prepare_dataset("shop", folder, DataConfig(k_core=4))
    with pytest.raises(BenchError, match="apply to RecBole atomic folders only"):
        folder_p5 = tmp_path / "p5"
        folder_p5.mkdir()
        (folder_p5 / "user_sequence.txt").write_text("u1 a b c\n")
        prepare_dataset("mine", folder_p5, DataConfig(k_core=2))


def cache_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


@pytest.mark.parametrize("header, rows, message", [
    ("user_id:token\ttimestamp:float", ["u1\t1"], "shop.inter:1: missing required column 'item_id:token'"),
    ("user_id:token\titem_id:tok\ttimestamp:float", ["u1\ta\t1"], "shop.inter:1:2: unknown type 'tok'"),
    (HEADER, ROWS[:3] + ["u2\ta\t5\tyesterday"], "shop.inter:5:4: 'yesterday' in column 'timestamp:float' is not a number"),
    (HEADER, ROWS[:2] + ["u2\ta\t5"], "shop.inter:4:4: expected 4 tab-separated fields"),
    ("", [], "shop.inter:1: empty file"),
])
def test_bad_input_names_file_line_and_column_and_caches_nothing(tmp_path, isolated_cache, header, rows, message):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "shop.inter").write_text("\n".join([header] + rows) + ("\n" if header else ""))
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        prepare_dataset("shop", folder)
    assert "\n" not in str(error.value)
    assert cache_files(isolated_cache) == []


def write_published(folder: Path) -> Path:
    folder.mkdir(parents=True)
    header = "user_id:token\titem_id:token"
    files = {"train": ["u1\ta", "u1\tb", "u2\tb", "u2\tc", "u3\ta"], "valid": ["u1\tc", "u2\ta", "u2\td"],
             "test": ["u1\te", "u1\ta", "u3\tb", "u4\tb"]}  # e: cold (not in train); u4: no training item
    for phase, rows in files.items():
        (folder / f"pub.{phase}.inter").write_text("\n".join([header] + rows) + "\n")
    return folder


def test_published_split_is_read_as_given(tmp_path):
    dataset, split = make_split(prepare_dataset("pub", write_published(tmp_path / "pub")))
    assert split.protocol == "files" and split.facts["users_without_training_interactions"] == 1
    names = dataset.item_ids
    as_names = lambda arrays: [[names[i] for i in a] for a in arrays]  # noqa: E731
    assert dataset.user_ids == ["u1", "u2", "u3"]
    assert as_names(split.train) == [["a", "b"], ["b", "c"], ["a"]]
    assert as_names(split.target_lists("valid")) == [["c"], ["a", "d"], []]
    assert as_names(split.target_lists("test")) == [["e", "a"], [], ["b"]]
    assert as_names(split.histories("test")) == [["a", "b", "c"], ["b", "c", "a", "d"], ["a"]]
    assert split.phase_users("test").tolist() == [0, 2]
    assert split.summary()["test_cold_targets"] == 1  # e
    with pytest.raises(BenchError, match="do not apply to a published split"):
        prepare_dataset("pub", tmp_path / "pub", DataConfig(k_core=2))


def test_published_split_record_has_warm_and_cold_among_all_items_and_within_their_group(tmp_path, isolated_cache):
    """pop on the published split: u1's cold target e (no training interaction, like d) ties
    with d at the bottom, so it ranks 4th among all items (a, b, c score higher) but 1st
    pessimistically of the two cold items."""
    from bench.runner import RunRequest, execute

    path = execute(RunRequest(method="pop", dataset="pub", data_dir=write_published(tmp_path / "pub"),
                              results_dir=tmp_path / "results", show_progress=False), log=lambda message: None)
    record = read_record(Path(path))
    assert record["warm_cold"] == {"warm_targets": 2, "warm_users": 2, "cold_targets": 1, "cold_users": 1}
    assert record["metrics_cold"]["NDCG@5"] == pytest.approx(1 / math.log2(4 + 2), abs=1e-6)
    assert record["metrics_cold_in_group"]["NDCG@5"] == pytest.approx(1 / math.log2(1 + 2), abs=1e-6)
    assert set(record["per_user_warm_in_group"]) == set(record["per_user_warm"])


def write_attributes(folder: Path, item_attributes: dict[str, list[int]], names: dict[str, str]) -> Path:
    """An IDGenRec/OpenP5 folder's attribute files: integer item IDs, attribute IDs, names for some."""
    folder.mkdir(parents=True, exist_ok=True)
    id2item = {str(number): item for number, item in enumerate(item_attributes, 1)}
    (folder / "datamaps.json").write_text(json.dumps({"id2item": id2item, "id2attribute": names}))
    (folder / "item2attributes.json").write_text(json.dumps(
        {number: item_attributes[item] for number, item in id2item.items()}))
    return folder


def test_published_split_takes_item_attributes_from_another_folder(tmp_path, isolated_cache):
    published = write_published(tmp_path / "pub")
    source = write_attributes(tmp_path / "p5", {"a": [1, 2], "b": [2], "zz": [1]}, {"1": "Toys"})
    options = DataConfig(item_attributes_from=str(source))
    dataset = prepare_dataset("pub", published, options)
    attributes = dict(zip(dataset.item_ids, dataset.item_attributes))
    assert attributes == {"a": ["Toys", "attribute_2"], "b": ["attribute_2"], "c": [], "d": [], "e": []}
    assert dataset.metadata["items_with_attributes"] == 2
    assert prepare_dataset("pub", published).item_attributes == [[]] * 5  # without the option: none
    assert make_split(dataset)[1].digest() == make_split(prepare_dataset("pub", published))[1].digest()
    # A changed attribute file is read again, not served from the preparation cache.
    write_attributes(source, {"a": [2], "b": [2]}, {"1": "Toys"})
    os.utime(source / "item2attributes.json", ns=(1, 1))
    assert prepare_dataset("pub", published, options).item_attributes[0] == ["attribute_2"]
    with pytest.raises(BenchError, match=r"^config key 'data.item_attributes_from': .*holds no item2attributes"):
        prepare_dataset("pub", published, DataConfig(item_attributes_from=str(tmp_path)))
    other = write_attributes(tmp_path / "other", {"q": [1]}, {})
    with pytest.raises(BenchError, match="gives attributes to none of this dataset's items"):
        prepare_dataset("pub", published, DataConfig(item_attributes_from=str(other)))


def test_incomplete_published_split_is_an_error(tmp_path):
    folder = write_published(tmp_path / "pub")
    (folder / "pub.valid.inter").unlink()
    with pytest.raises(BenchError, match="published split incomplete, missing pub.valid.inter"):
        prepare_dataset("pub", folder)


def test_user_dataset_runs_through_the_cli(tmp_path):
    folder = write_folder(tmp_path / "data")
    env = dict(os.environ, GENREC_BENCH_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--method", "pop", "--dataset", "myshop",
                             "--data-dir", str(folder), "--results-dir", str(tmp_path / "r"), "--quiet"],
                            capture_output=True, text=True, env=env, cwd=PROJECT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 items named here occur in no interaction" in result.stderr
    record = json.loads(Path(result.stdout.strip().splitlines()[-1]).read_text())
    assert record["dataset"] == "myshop" and record["dataset_source"]["user_dataset"] is True
    assert record["dataset_source"]["format"] == "atomic" and record["dataset_source"]["timestamp_ties"] == 1
    assert len(record["dataset_source"]["files_fingerprint"]) == 16
    assert record["split"]["protocol"] == "leave-one-out"
    assert record["inference"]["users"] == 3 and record["inference"]["seconds"] >= 0


def test_unknown_name_without_a_recognised_folder_is_refused(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(BenchError, match="has no card and .* holds no recognised format"):
        prepare_dataset("mine", tmp_path / "nothing")
