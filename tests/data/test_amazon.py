import gzip
import hashlib
import json

import pytest

from bench.data import prepare
from bench.data.amazon import read_amazon2014
from bench.data.dataset import Dataset
from bench.errors import BenchError
from bench.registry import Registry

# 8 users x 7 items. U1..U6 each review I1..I5 (the dense core). U8 has 4 reviews, so
# round 1 removes U8 (and I7, reviewed only by U8); that leaves I6 with 4 reviewers, so
# round 2 removes I6; that leaves U7 with 4 reviews, so round 3 removes U7.
CORE_USERS = [f"U{u}" for u in range(1, 7)]
CORE_ITEMS = [f"I{i}" for i in range(1, 6)]
EXTRA = {"U7": ["I1", "I2", "I3", "I4", "I6"], "U8": ["I6", "I7", "I1", "I2"],
         "U1": ["I6"], "U2": ["I6"], "U3": ["I6"]}
# U1's times are out of order in the file, with a tie (I5 and I2 at 200) that must keep
# the file order; everyone else's time is the item's number.
U1_TIMES = {"I3": 300, "I1": 100, "I5": 200, "I2": 200, "I4": 50, "I6": 400}

META_I1 = ("{'asin': 'I1', 'title': \"Kid's  Puzzle &amp; Game\", 'brand': 'Acme', "
           "'categories': [['Toys & Games', 'Puzzles'], ['Toys & Games', 'Games', 'Puzzles']], "
           "'price': 12.5, 'salesRank': {'Toys & Games': 1234}, "
           "'related': {'also_bought': ['I2', 'I3']}, 'imUrl': 'http://example.org/i1.jpg', "
           "'description': 'A  fun\\n puzzle.'}")


def review_rows():
    rows = []
    pairs = [(u, i) for u in CORE_USERS for i in CORE_ITEMS]
    pairs += [(u, i) for u, items in EXTRA.items() for i in items]
    # The upstream file is grouped by item, not by user or time (here I7 first, I1 last).
    for user, item in sorted(pairs, key=lambda pair: (-int(pair[1][1:]), pair[0])):
        time = U1_TIMES[item] if user == "U1" else int(item[1:])
        rows.append({"reviewerID": user, "asin": item, "unixReviewTime": time, "overall": 5.0})
    return rows


def meta_lines():
    lines = [META_I1]
    for number in range(2, 8):
        lines.append(repr({"asin": f"I{number}", "title": f"Item {number}",
                           "categories": [["Toys & Games", f"Group {number % 2}"]]}))
    return lines


def write_gz(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def write_source(folder, reviews=None, meta=None):
    reviews = reviews if reviews is not None else [json.dumps(row) for row in review_rows()]
    write_gz(folder / "reviews_Toys_5.json.gz", reviews)
    write_gz(folder / "meta_Toys.json.gz", meta if meta is not None else meta_lines())
    return folder


def card(**extra):
    return {"name": "toyfix", "title": "fixture", "format": "amazon2014", "category": "Toys",
            "reviews_url": "http://example.invalid/reviews_Toys_5.json.gz",
            "meta_url": "http://example.invalid/meta_Toys.json.gz", **extra}


def sequence_of(dataset, user):
    return [dataset.item_ids[i] for i in dataset.sequences[dataset.user_ids.index(user)]]


def test_iterative_5_core_keeps_exactly_the_core(tmp_path):
    dataset = read_amazon2014(card(), write_source(tmp_path / "raw"))
    assert dataset.user_ids == CORE_USERS
    assert sorted(dataset.item_ids) == CORE_ITEMS
    assert dataset.metadata["5_core_rounds"] == 3
    assert dataset.metadata["counts_before_5_core"] == {"users": 8, "items": 7, "interactions": 42}
    assert dataset.metadata["counts_after_5_core"] == {"users": 6, "items": 5, "interactions": 30}


def test_sequences_are_chronological_and_ties_keep_file_order(tmp_path):
    dataset = read_amazon2014(card(), write_source(tmp_path / "raw"))
    assert sequence_of(dataset, "U1") == ["I4", "I1", "I5", "I2", "I3"]
    assert sequence_of(dataset, "U2") == ["I1", "I2", "I3", "I4", "I5"]


def test_item_text_uses_all_descriptive_metadata(tmp_path):
    dataset = read_amazon2014(card(), write_source(tmp_path / "raw"))
    i1 = dataset.item_ids.index("I1")
    assert dataset.item_text[i1] == ("title: Kid's Puzzle & Game; brand: Acme; "
                                     "categories: Toys & Games, Puzzles, Games; price: 12.50; "
                                     "sales rank: 1234 in Toys & Games; description: A fun puzzle.")
    assert dataset.item_attributes[i1] == ["Puzzles", "Games", "Acme"]
    i2 = dataset.item_ids.index("I2")
    assert dataset.item_text[i2] == "title: Item 2; categories: Toys & Games, Group 0"
    assert dataset.item_attributes[i2] == ["Group 0"]


def test_meta_lines_are_python_literals_not_json(tmp_path):
    with pytest.raises(json.JSONDecodeError):
        json.loads(meta_lines()[1])  # single quotes: json rejects what the reader must accept
    dataset = read_amazon2014(card(), write_source(tmp_path / "raw"))
    assert dataset.item_text[dataset.item_ids.index("I3")].startswith("title: Item 3;")
    assert dataset.metadata["items_without_metadata"] == 0


def test_items_without_metadata_are_counted(tmp_path):
    dataset = read_amazon2014(card(), write_source(tmp_path / "raw", meta=meta_lines()[:3]))
    assert dataset.metadata["items_without_metadata"] == 2
    assert dataset.item_text[dataset.item_ids.index("I5")] == "item: I5"


def test_metadata_records_source_checksums(tmp_path):
    folder = write_source(tmp_path / "raw")
    dataset = read_amazon2014(card(), folder)
    assert dataset.metadata["sha256"] == {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in ("reviews_Toys_5.json.gz", "meta_Toys.json.gz")}


def test_card_checksum_mismatch_is_an_error(tmp_path):
    with pytest.raises(BenchError, match=r"reviews_Toys_5\.json\.gz: sha256 .* does not match .*reviews_sha256"):
        read_amazon2014(card(reviews_sha256="ab" * 32), write_source(tmp_path / "raw"))


def test_malformed_meta_line_names_file_and_line(tmp_path):
    meta = meta_lines()
    meta[2] = "{'asin': 'I3', 'title': 'broken'"
    with pytest.raises(BenchError, match=r"meta_Toys\.json\.gz:3: not a Python dict literal"):
        read_amazon2014(card(), write_source(tmp_path / "raw", meta=meta))


def test_malformed_review_lines_name_file_and_line(tmp_path):
    rows = [json.dumps(row) for row in review_rows()]
    for bad_line, message in (("not json", "invalid JSON"), ('{"reviewerID": "U1", "asin": "I1"}',
                                                            "review lacks 'unixReviewTime'")):
        reviews = rows[:1] + [bad_line] + rows[1:]
        with pytest.raises(BenchError, match=rf"reviews_Toys_5\.json\.gz:2: {message}"):
            read_amazon2014(card(), write_source(tmp_path / "raw", reviews=reviews))


def test_truncated_gzip_names_the_file(tmp_path):
    folder = write_source(tmp_path / "raw")
    path = folder / "reviews_Toys_5.json.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(BenchError, match=r"reviews_Toys_5\.json\.gz: truncated or corrupt gzip"):
        read_amazon2014(card(), folder)


def test_missing_files_are_downloaded_from_the_card_urls(tmp_path):
    upstream = write_source(tmp_path / "upstream")
    raw = tmp_path / "raw"
    raw.mkdir()
    dataset = read_amazon2014(card(reviews_url=(upstream / "reviews_Toys_5.json.gz").as_uri(),
                                   meta_url=(upstream / "meta_Toys.json.gz").as_uri()), raw)
    assert dataset.user_ids == CORE_USERS
    assert (raw / "reviews_Toys_5.json.gz").read_bytes() == (upstream / "reviews_Toys_5.json.gz").read_bytes()
    assert sorted(p.name for p in raw.iterdir()) == ["meta_Toys.json.gz", "meta_Toys.json.gz.sha256",
                                                     "reviews_Toys_5.json.gz", "reviews_Toys_5.json.gz.sha256"]


def test_failed_download_names_the_url(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    missing = (tmp_path / "gone.json.gz").as_uri()
    with pytest.raises(BenchError, match=rf"^{missing}: download failed"):
        read_amazon2014(card(reviews_url=missing), raw)
    assert list(raw.iterdir()) == []


def with_card_registry(monkeypatch, the_card):
    registry = Registry("dataset")
    registry.add(the_card["name"], lambda: the_card)
    monkeypatch.setattr(prepare, "dataset_cards", lambda: registry)


def test_prepare_dataset_caches_the_prepared_dataset(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(cache))
    with_card_registry(monkeypatch, card())
    dataset = prepare.prepare_dataset("toyfix", write_source(tmp_path / "raw"))
    cached = list((cache / "prepared").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("toyfix-")
    reloaded = Dataset.load(cached[0])
    assert reloaded.user_ids == dataset.user_ids == CORE_USERS
    assert reloaded.metadata["card"]["category"] == "Toys"


def test_prepare_dataset_leaves_nothing_when_the_reader_fails(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(cache))
    with_card_registry(monkeypatch, card())
    meta = meta_lines()
    meta[4] = "{'asin': 'I5', 'categories': 'not a list'}"
    with pytest.raises(BenchError, match=r"meta_Toys\.json\.gz:5: 'categories'"):
        prepare.prepare_dataset("toyfix", write_source(tmp_path / "raw", meta=meta))
    prepared = cache / "prepared"
    assert not prepared.exists() or list(prepared.iterdir()) == []
