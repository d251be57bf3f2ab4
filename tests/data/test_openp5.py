import json

import pytest

from bench.data.openp5 import read_openp5_folder
from bench.data.split import leave_one_out
from bench.errors import BenchError


def write_folder(folder, lines, titles=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "user_sequence.txt").write_text("\n".join(lines) + "\n")
    if titles:
        (folder / "item_generative_indexing_phase_0.txt").write_text(
            "\n".join(f"{item} {words}" for item, words in titles.items()) + "\n")
    return folder


def test_reads_sequences_text_and_attributes(tmp_path):
    folder = write_folder(tmp_path / "d", ["u1 A B C D", "u2 B C D", "u3 C D A E"], {"A": "red ball", "B": "toy car"})
    (folder / "datamaps.json").write_text(json.dumps({"id2item": {"1": "A", "2": "B"},
                                                      "id2attribute": {"7": "Toys", "8": "Acme"}}))
    (folder / "item2attributes.json").write_text(json.dumps({"1": [7, 8], "2": [9]}))
    dataset = read_openp5_folder("d", folder)
    assert dataset.n_users == 3 and dataset.n_items == 5
    a = dataset.item_ids.index("A")
    assert dataset.item_text[a] == "title: red ball; attributes: Toys, Acme"
    assert dataset.item_attributes[dataset.item_ids.index("B")] == ["attribute_9"]
    assert dataset.item_text[dataset.item_ids.index("E")] == "item: E"
    split = leave_one_out(dataset)
    assert [dataset.item_ids[i] for i in split.train[0]] == ["A", "B"]
    assert dataset.item_ids[split.valid_target[0]] == "C" and dataset.item_ids[split.test_target[0]] == "D"
    assert [dataset.item_ids[i] for i in split.histories("test")[0]] == ["A", "B", "C"]


def test_short_users_are_dropped_with_a_count(tmp_path):
    dataset = read_openp5_folder("d", write_folder(tmp_path / "d", ["u1 A B C", "u2 A B", "u3 A"]))
    assert dataset.user_ids == ["u1"]
    assert dataset.metadata["dropped_users_fewer_than_3"] == 2


def test_line_with_no_items_names_file_and_line(tmp_path):
    folder = write_folder(tmp_path / "d", ["u1 A B C", "u2"])
    with pytest.raises(BenchError, match=r"user_sequence.txt:2: user 'u2' has no items"):
        read_openp5_folder("d", folder)


def test_missing_file(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(BenchError, match="user_sequence.txt: file not found"):
        read_openp5_folder("d", tmp_path / "d")


def test_ascending_order_share_is_recorded(tmp_path):
    dataset = read_openp5_folder("d", write_folder(tmp_path / "d", ["u1 A B C", "u2 C B A"]))
    assert dataset.metadata["share_sequences_in_ascending_id_order"] == 0.5


def test_item_plain_text_file_gives_the_items_text_and_the_record_names_its_fields(tmp_path):
    """IDGenRec's own item-text file wins over the phase-0 words; an item it lacks keeps them."""
    from pathlib import Path

    from bench.runner import RunRequest, execute

    folder = write_folder(tmp_path / "d", ["u1 A B C D", "u2 B C D", "u3 C D A E"], {"A": "red ball", "E": "kite"})
    (folder / "item_plain_text.txt").write_text(
        "A title: Red Rubber Ball, 10 cm; categories: Toys & Games, Balls\n\n"
        "B title: Toy Car; categories: Toys & Games, Vehicles\n"
        "C title: Puzzle; categories: Toys & Games\nD title: Doll; categories: Toys & Games, Dolls\n")
    dataset = read_openp5_folder("d", folder)
    text = dict(zip(dataset.item_ids, dataset.item_text))
    assert text["A"] == "title: Red Rubber Ball, 10 cm; categories: Toys & Games, Balls"
    assert text["E"] == "title: kite"
    assert dataset.metadata["item_text_fields"].startswith("title; categories (item_plain_text.txt) for 4 items")

    path = execute(RunRequest(method="pop", dataset="d", data_dir=folder, results_dir=tmp_path / "results",
                              show_progress=False), log=lambda message: None)
    record = json.loads(Path(path).read_text())
    assert record["dataset_source"]["item_text_fields"] == dataset.metadata["item_text_fields"]


def test_item_plain_text_line_without_text_names_file_and_line(tmp_path):
    folder = write_folder(tmp_path / "d", ["u1 A B C"])
    (folder / "item_plain_text.txt").write_text("A title: ball\nB\n")
    with pytest.raises(BenchError, match=r"item_plain_text.txt:2: item 'B' has no text"):
        read_openp5_folder("d", folder)
