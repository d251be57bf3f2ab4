import hashlib
import json

import pytest

from bench.data import prepare
from bench.data.dataset import Dataset
from bench.data.yelp import read_yelp
from bench.errors import BenchError
from bench.registry import Registry

REVIEWS = "yelp_academic_dataset_review.json"
BUSINESSES = "yelp_academic_dataset_business.json"

# Same shape as the Amazon fixture: U1..U6 x B1..B5 survive; U8 goes in round 1 (with
# B7), B6 in round 2, U7 in round 3.
CORE_USERS = [f"U{u}" for u in range(1, 7)]
CORE_ITEMS = [f"B{i}" for i in range(1, 6)]
EXTRA = {"U7": ["B1", "B2", "B3", "B4", "B6"], "U8": ["B6", "B7", "B1", "B2"],
         "U1": ["B6"], "U2": ["B6"], "U3": ["B6"]}
# U1's dates are out of file order; B5 and B2 share a timestamp (file order must win).
U1_DATES = {"B3": "2019-03-01 09:00:00", "B1": "2019-02-01 18:30:00", "B5": "2019-02-15 12:00:00",
            "B2": "2019-02-15 12:00:00", "B4": "2019-02-01 08:00:00", "B6": "2019-04-01 00:00:00"}


def review_lines():
    pairs = [(u, b) for u in CORE_USERS for b in CORE_ITEMS] + [(u, b) for u, bs in EXTRA.items() for b in bs]
    lines = []
    for user, business in sorted(pairs, key=lambda pair: (-int(pair[1][1:]), pair[0])):
        date = U1_DATES[business] if user == "U1" else f"2019-01-{int(business[1:]):02d} 10:00:00"
        lines.append(json.dumps({"review_id": f"r{len(lines)}", "user_id": user, "business_id": business,
                                 "stars": 4.0, "date": date, "text": "Nice; would go again."}))
    return lines


def business_lines():
    lines = [json.dumps({"business_id": "B1", "name": "Joe's  Diner", "address": "1 Main St", "city": "Tempe",
                         "state": "AZ", "stars": 4.5, "review_count": 9, "attributes": {"WiFi": "free"},
                         "categories": "Diners, Breakfast & Brunch, Diners"})]
    for number in range(2, 8):
        lines.append(json.dumps({"business_id": f"B{number}", "name": f"Place {number}", "city": "Mesa",
                                 "state": "AZ", "stars": 3.0, "categories": None}))
    return lines


def write_source(folder, reviews=None, businesses=None):
    folder.mkdir(parents=True, exist_ok=True)
    if reviews is not False:
        (folder / REVIEWS).write_text("\n".join(reviews or review_lines()) + "\n")
    if businesses is not False:
        (folder / BUSINESSES).write_text("\n".join(businesses or business_lines()) + "\n")
    return folder


def card(**extra):
    return {"name": "yelpfix", "title": "fixture", "format": "yelp", "reviews_file": REVIEWS,
            "business_file": BUSINESSES, **extra}


def sequence_of(dataset, user):
    return [dataset.item_ids[i] for i in dataset.sequences[dataset.user_ids.index(user)]]


def test_iterative_5_core_keeps_exactly_the_core(tmp_path):
    dataset = read_yelp(card(), write_source(tmp_path / "raw"))
    assert dataset.user_ids == CORE_USERS
    assert sorted(dataset.item_ids) == CORE_ITEMS
    assert dataset.metadata["5_core_rounds"] == 3
    assert dataset.metadata["counts_before_5_core"] == {"users": 8, "items": 7, "interactions": 42}
    assert dataset.metadata["counts_after_5_core"] == {"users": 6, "items": 5, "interactions": 30}


def test_sequences_follow_date_and_time_and_ties_keep_file_order(tmp_path):
    dataset = read_yelp(card(), write_source(tmp_path / "raw"))
    assert sequence_of(dataset, "U1") == ["B4", "B1", "B5", "B2", "B3"]
    assert sequence_of(dataset, "U2") == ["B1", "B2", "B3", "B4", "B5"]


def test_item_text_and_attributes_come_from_business_fields(tmp_path):
    dataset = read_yelp(card(), write_source(tmp_path / "raw"))
    b1 = dataset.item_ids.index("B1")
    assert dataset.item_text[b1] == ("name: Joe's Diner; city: Tempe; state: AZ; "
                                     "categories: Diners, Breakfast & Brunch; stars: 4.5")
    assert dataset.item_attributes[b1] == ["Diners", "Breakfast & Brunch"]
    b2 = dataset.item_ids.index("B2")
    assert dataset.item_text[b2] == "name: Place 2; city: Mesa; state: AZ; stars: 3"
    assert dataset.item_attributes[b2] == []


def test_metadata_records_source_checksums(tmp_path):
    folder = write_source(tmp_path / "raw")
    dataset = read_yelp(card(), folder)
    assert dataset.metadata["sha256"] == {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                                          for name in (REVIEWS, BUSINESSES)}


def test_date_window_filters_before_the_core(tmp_path):
    # Only U1's February dates fall in the window: too few for any 5-core.
    with pytest.raises(BenchError, match=f"{REVIEWS}: no users and items with 5 or more interactions"):
        read_yelp(card(start_date="2019-02-01", end_date="2019-02-28"), write_source(tmp_path / "raw"))
    # Ending on 2019-01-05 (inclusive) drops all of U1's reviews (February onwards) and
    # every review of B6 and B7 (January 6th and 7th), so U2..U6 remain.
    dataset = read_yelp(card(end_date="2019-01-05"), write_source(tmp_path / "raw"))
    assert dataset.user_ids == CORE_USERS[1:]
    assert dataset.metadata["reviews_outside_date_window"] == 6 + 4 + 1  # U1; B6 by U2, U3, U7, U8; B7


def test_bad_card_date_names_the_key(tmp_path):
    with pytest.raises(BenchError, match=r"'start_date' is not a YYYY-MM-DD date"):
        read_yelp(card(start_date="January"), write_source(tmp_path / "raw"))


def test_missing_files_say_what_to_download_and_where(tmp_path):
    folder = write_source(tmp_path / "raw", reviews=False)
    with pytest.raises(BenchError) as error:
        read_yelp(card(), folder)
    message = str(error.value)
    assert REVIEWS in message and "https://www.yelp.com/dataset" in message
    assert str(folder.resolve()) in message and BUSINESSES not in message
    with pytest.raises(BenchError, match=f"{REVIEWS} and {BUSINESSES} from the archive and put them in"):
        read_yelp(card(), tmp_path)


def test_malformed_lines_name_file_and_line(tmp_path):
    lines = review_lines()
    cases = [("{broken", "invalid JSON"), ('{"user_id": "U1", "business_id": "B1"}', "review lacks 'date'"),
             ('{"user_id": "U1", "business_id": "B1", "date": "last tuesday"}', "'date' is not YYYY-MM-DD")]
    for bad_line, message in cases:
        with pytest.raises(BenchError, match=rf"{REVIEWS}:3: {message}"):
            read_yelp(card(), write_source(tmp_path / "raw", reviews=lines[:2] + [bad_line] + lines[2:]))
    businesses = business_lines()
    businesses[1] = json.dumps({"business_id": "B2", "categories": ["Diners"]})
    with pytest.raises(BenchError, match=rf"{BUSINESSES}:2: 'categories' is not a comma-separated string"):
        read_yelp(card(), write_source(tmp_path / "raw2", businesses=businesses))


def test_prepare_dataset_caches_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(cache))
    registry = Registry("dataset")
    registry.add("yelpfix", card)
    monkeypatch.setattr(prepare, "dataset_cards", lambda: registry)
    with pytest.raises(BenchError, match=REVIEWS):
        prepare.prepare_dataset("yelpfix", write_source(tmp_path / "empty", reviews=False))
    assert not (cache / "prepared").exists() or list((cache / "prepared").iterdir()) == []
    dataset = prepare.prepare_dataset("yelpfix", write_source(tmp_path / "raw"))
    [cached] = (cache / "prepared").iterdir()
    assert Dataset.load(cached).user_ids == dataset.user_ids == CORE_USERS
