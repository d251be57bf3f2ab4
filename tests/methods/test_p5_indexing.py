"""P5 item indexing (Hua et al. 2023): unique IDs, seeded determinism, the SID leak
guard, recursive CID clustering, SemID numbering, and the plugins on the T5 engine."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from bench.config import resolve
from bench.data.dataset import build_dataset
from bench.data.split import leave_one_out
from bench.errors import BenchError
from bench.method import RunContext, TrainingData
from methods.p5_cid import P5CollaborativeConfig, P5CollaborativeIndexing
from methods.p5_indexing import (FALLBACK_CATEGORY_TOKEN, FIRST_NUMBER, collaborative_ids, random_ids,
                                 semantic_ids, sequential_ids)
from methods.p5_semid import P5SemanticConfig, P5SemanticIndexing
from tests.conftest import tiny_dataset

TOYS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "amazon-toys"
TOKEN = re.compile(r"<[^<>]+>")


def assert_one_unique_id_per_item(item_ids: list[str], n_items: int) -> None:
    assert len(item_ids) == n_items
    assert all(isinstance(i, str) and i.strip() for i in item_ids)
    assert len(set(item_ids)) == n_items


def tokens_of(item_id: str) -> list[str]:
    tokens = TOKEN.findall(item_id)
    assert "".join(tokens) == item_id, f"{item_id!r} is not made of whole tokens"
    return tokens


def two_communities(n_per_group: int = 24, n_users: int = 60, seed: int = 0) -> list[np.ndarray]:
    """Users buy only inside group A (items 0..n-1) or group B (n..2n-1); each group has two
    halves, and a user buys four items in one half and one in the other."""
    rng = np.random.default_rng(seed)
    half = n_per_group // 2
    sequences = []
    for user in range(n_users):
        group = user % 2
        sub = (user // 2) % 2
        base = group * n_per_group + sub * half
        other_half = group * n_per_group + (1 - sub) * half
        items = np.append(base + rng.choice(half, size=4, replace=False), other_half + rng.integers(half))
        sequences.append(rng.permutation(items).astype(np.int64))
    return sequences


# ------------------------------------------------------------------------------- SID

def test_sequential_ids_number_training_items_by_first_appearance() -> None:
    train = [np.array([2, 0]), np.array([0, 3, 2])]
    item_ids = sequential_ids(train, n_items=5, seed=0)
    assert item_ids[2] == str(FIRST_NUMBER) and item_ids[0] == str(FIRST_NUMBER + 1)
    assert item_ids[3] == str(FIRST_NUMBER + 2)
    # Items 1 and 4 occur in no training sequence: numbered after every training item.
    assert sorted([item_ids[1], item_ids[4]]) == [str(FIRST_NUMBER + 3), str(FIRST_NUMBER + 4)]
    assert_one_unique_id_per_item(item_ids, 5)


def test_sequential_ids_do_not_leak_the_test_item_as_max_plus_one() -> None:
    # Each user's last two items are new to the catalogue. P5 numbered whole sequences, so
    # the test item got (largest number in the user's history) + 1 for every user.
    n_users, shared = 30, 6
    users = []
    for user in range(n_users):
        new_valid, new_test = shared + 2 * user, shared + 2 * user + 1
        history = [f"i{user % shared}", f"i{(user + 1) % shared}"]
        users.append((f"u{user}", history + [f"i{new_valid}", f"i{new_test}"]))
    dataset = build_dataset("leak", users, {}, {}, {})
    split = leave_one_out(dataset)

    def leaked_share(item_ids: list[str]) -> float:
        numbers = np.array([int(i) for i in item_ids])
        histories = split.histories("test")
        leaked = [numbers[target] == numbers[history].max() + 1 for history, target in zip(histories, split.test_target)]
        return float(np.mean(leaked))

    over_whole_sequences = sequential_ids(dataset.sequences, dataset.n_items)
    assert leaked_share(over_whole_sequences) == 1.0  # the fixture does show P5's leak
    item_ids = sequential_ids(split.train, dataset.n_items, seed=0)
    assert_one_unique_id_per_item(item_ids, dataset.n_items)
    assert leaked_share(item_ids) < 0.2
    # Never-trained items all come after the trained ones.
    trained = np.unique(np.concatenate(split.train))
    numbers = np.array([int(i) for i in item_ids])
    cold = np.setdiff1d(np.arange(dataset.n_items), trained)
    assert numbers[trained].max() < numbers[cold].min()


def test_sequential_ids_are_deterministic_with_the_seed(tiny) -> None:
    split = leave_one_out(tiny)
    assert sequential_ids(split.train, tiny.n_items, seed=3) == sequential_ids(split.train, tiny.n_items, seed=3)


def test_sequential_ids_reject_items_outside_the_catalogue() -> None:
    with pytest.raises(BenchError, match="outside"):
        sequential_ids([np.array([0, 7])], n_items=5)


# ------------------------------------------------------------------------------- RID

def test_random_ids_deal_out_the_sid_numbers_by_seed() -> None:
    item_ids = random_ids(50, seed=1)
    assert_one_unique_id_per_item(item_ids, 50)
    assert sorted(int(i) for i in item_ids) == list(range(FIRST_NUMBER, FIRST_NUMBER + 50))
    assert item_ids == random_ids(50, seed=1)
    assert item_ids != random_ids(50, seed=2)


# ------------------------------------------------------------------------------- CID

def test_collaborative_ids_recurse_until_clusters_are_small() -> None:
    train = two_communities()
    n_items = 48 + 3  # three items that no training sequence holds
    index = collaborative_ids(train, n_items, cluster_size=5, n_clusters=2, seed=0)
    assert_one_unique_id_per_item(index.item_ids, n_items)
    assert index.depth > 1
    token_lists = [tokens_of(i) for i in index.item_ids]
    assert max(len(t) for t in token_lists) == index.depth + 1
    assert set(index.tokens) == {t for tokens in token_lists for t in tokens}
    # The first split follows the graph: the two communities never share a top cluster.
    top = [tokens[0] for tokens in token_lists]
    assert len(set(top[:24])) == 1 and len(set(top[24:48])) == 1 and top[0] != top[24]
    # A leaf holds at most cluster_size items.
    leaves: dict[tuple[str, ...], int] = {}
    for tokens in token_lists:
        leaves[tuple(tokens[:-1])] = leaves.get(tuple(tokens[:-1]), 0) + 1
    assert max(leaves.values()) <= 5


def test_collaborative_ids_are_prefix_free_and_tokens_say_their_role() -> None:
    index = collaborative_ids(two_communities(), 51, cluster_size=5, n_clusters=3, seed=0)
    sequences = [tuple(tokens_of(i)) for i in index.item_ids]
    as_set = set(sequences)
    for tokens in sequences:
        assert not any(tokens[:cut] in as_set for cut in range(1, len(tokens))), tokens
        assert tokens[-1].startswith("<CIL") and not any(t.startswith("<CIL") for t in tokens[:-1])
        # Level tokens carry their level, so the same cluster number at two levels differs.
        assert [int(t[3:].split("_")[0]) for t in tokens[:-1]] == list(range(len(tokens) - 1))


def test_collaborative_ids_are_deterministic_with_the_seed() -> None:
    train = two_communities(seed=4)
    first = collaborative_ids(train, 48, cluster_size=4, n_clusters=3, seed=7)
    assert first == collaborative_ids(train, 48, cluster_size=4, n_clusters=3, seed=7)


def test_collaborative_ids_handle_a_graph_without_edges() -> None:
    # One item per user: nothing co-occurs, so clusters are runs of item indices.
    train = [np.array([i]) for i in range(30)]
    index = collaborative_ids(train, 30, cluster_size=4, n_clusters=3, seed=0)
    assert_one_unique_id_per_item(index.item_ids, 30)
    assert index.depth >= 2


def test_collaborative_ids_reject_bad_sizes() -> None:
    with pytest.raises(BenchError, match="n_clusters"):
        collaborative_ids([np.array([0, 1])], 2, cluster_size=1, n_clusters=1)
    with pytest.raises(BenchError, match="cluster_size"):
        P5CollaborativeConfig(cluster_size=0)


# ----------------------------------------------------------------------------- SemID

def test_semantic_ids_number_items_sharing_a_category_path() -> None:
    attributes = [["Toys", "Puzzles"], ["Toys", "Puzzles"], ["Toys"], [], ["Toys", "Board Games"], [],
                  ["Toys", "Puzzles"]]
    index = semantic_ids(attributes)
    assert_one_unique_id_per_item(index.item_ids, len(attributes))
    assert index.item_ids[0] == "<cat:Toys><cat:Puzzles>1"
    assert index.item_ids[1] == "<cat:Toys><cat:Puzzles>2" and index.item_ids[6] == "<cat:Toys><cat:Puzzles>3"
    assert index.item_ids[2] == "<cat:Toys>1"
    assert index.item_ids[3] == f"{FALLBACK_CATEGORY_TOKEN}1" and index.item_ids[5] == f"{FALLBACK_CATEGORY_TOKEN}2"
    assert "<cat:Board_Games>" in index.tokens  # one token per name: no whitespace inside
    assert set(index.tokens) == {"<cat:Toys>", "<cat:Puzzles>", "<cat:Board_Games>", FALLBACK_CATEGORY_TOKEN}
    assert semantic_ids(attributes) == index


def test_semantic_ids_stay_unique_when_paths_are_cut() -> None:
    attributes = [["a", "b", "c"], ["a", "b", "d"], ["a", "x"], ["a<b", "c"]]
    index = semantic_ids(attributes, max_categories=1)
    assert_one_unique_id_per_item(index.item_ids, 4)
    assert index.item_ids[:3] == ["<cat:a>1", "<cat:a>2", "<cat:a>3"]
    assert all(t.count("<") == 1 and t.count(">") == 1 for t in index.tokens)
    with pytest.raises(BenchError, match="max_categories"):
        semantic_ids(attributes, max_categories=0)


def test_semantic_config_reads_none_and_numbers_from_the_command_line() -> None:
    resolved = resolve("p5-semid", P5SemanticConfig, {}, "cpu", {}, {"max_categories": "3"})
    assert resolved.method.max_categories == 3
    resolved = resolve("p5-semid", P5SemanticConfig, {}, "cpu", {}, {"max_categories": "none"})
    assert resolved.method.max_categories is None


# --------------------------------------------------------------------- real Toys data

@pytest.mark.skipif(not (TOYS / "user_sequence.txt").is_file(), reason="shared Toys data not present")
def test_ids_are_unique_on_the_toys_catalogue() -> None:
    from bench.data.openp5 import read_openp5_folder

    started = time.process_time()  # CPU time: other jobs on the machine do not count
    dataset = read_openp5_folder("toys", TOYS)
    split = leave_one_out(dataset)
    assert_one_unique_id_per_item(sequential_ids(split.train, dataset.n_items), dataset.n_items)
    assert_one_unique_id_per_item(random_ids(dataset.n_items, seed=0), dataset.n_items)
    assert_one_unique_id_per_item(semantic_ids(dataset.item_attributes).item_ids, dataset.n_items)
    # CID on Toys takes ~20 s, beyond a unit test; it is measured in the report instead.
    assert time.process_time() - started < 10


# ---------------------------------------------------------------------------- plugins

TINY_ENGINE = dict(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=150, epochs=1,
                   batch_size=16, beam_width=5)


@pytest.mark.parametrize("method_class, config", [
    (P5CollaborativeIndexing, P5CollaborativeConfig(cluster_size=4, n_clusters=3, **TINY_ENGINE)),
    (P5SemanticIndexing, P5SemanticConfig(**TINY_ENGINE)),
])
def test_new_tokens_reach_the_tokenizer_whole(method_class, config, tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    dataset = tiny_dataset(n_users=24, n_items=20)
    data = TrainingData(dataset=dataset, split=leave_one_out(dataset))
    method = method_class(config, RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False))
    method.fit(data)
    tokenizer = method.tokenizer
    for item_id in method.identifiers:
        pieces = tokenizer.convert_ids_to_tokens(tokenizer(item_id, add_special_tokens=False).input_ids)
        assert [p for p in pieces if p.startswith("<")] == TOKEN.findall(item_id)
    ranking = method.rank(np.arange(3), data.split.histories("test")[:3], 5)
    assert ranking.shape == (3, 5) and ranking.min() >= 0 and ranking.max() < data.n_items
    assert method.metadata()["extra_tokens"] == len(method.extra_tokens()) > 0


def test_semid_refuses_a_dataset_without_categories(tmp_path: Path) -> None:
    """Without categories every item would share the fallback path: SemID would be a counter."""
    from bench.data.dataset import build_dataset

    base = tiny_dataset(n_users=8, n_items=12)
    sequences = [(f"u{user}", [f"i{item}" for item in items]) for user, items in enumerate(
        [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]])]
    bare = build_dataset("bare", sequences, {}, {}, {"format": "test"})
    method = P5SemanticIndexing(P5SemanticConfig(**TINY_ENGINE),
                                RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False))
    with pytest.raises(BenchError, match="dataset bare has no item categories"):
        method.item_identifiers(TrainingData(dataset=bare, split=leave_one_out(bare)))
    assert method.item_identifiers(TrainingData(dataset=base, split=leave_one_out(base)))
