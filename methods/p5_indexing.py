"""Item indexing schemes of Hua et al., "How to Index Item IDs for Recommendation
Foundation Models" (2023), used as P5 baselines in the IDGenRec paper.

Each indexer returns one ID string per item index 0..n_items-1, all distinct. IDs made of
new tokens (``<CI...>``, ``<cat:...>``) come with the list of those tokens so the engine
can add them to the tokenizer; plain digit strings are left to the T5 tokenizer, whose
sub-word pieces let neighbouring numbers share tokens (the point of SID, Sec. 4.1).

Only training interactions are read: a method must not see validation or test targets.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import scipy.linalg
import scipy.sparse as sparse
from scipy.sparse.linalg import ArpackNoConvergence, eigsh

from bench.errors import BenchError

# P5 numbers items from 1001 so that every ID has four or more digits and the
# tokenizer splits them into shared pieces ("10", "01", ...) rather than single digits.
FIRST_NUMBER = 1001

FALLBACK_CATEGORY_TOKEN = "<cat-none>"
LEAF_TOKEN = "<CIL{}>"
LEVEL_TOKEN = "<CI{}_{}>"


def _training_items(train_sequences: list[np.ndarray], n_items: int) -> np.ndarray:
    items = np.concatenate(train_sequences) if train_sequences else np.zeros(0, dtype=np.int64)
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise BenchError(f"training sequences hold item index {int(items.max())} outside 0..{n_items - 1}")
    return items


def sequential_ids(train_sequences: list[np.ndarray], n_items: int, seed: int = 0) -> list[str]:
    """SID (Sec. 4.1): number items by first appearance, reading users in dataset order.

    Numbered from the training part only. P5 numbered over whole sequences, so a user's
    test item was often the largest number in their history + 1 (consecutive new items),
    a leak the model learns to exploit. Items never seen in training (validation/test
    targets only) come after all training items in a seeded random order: item indices
    themselves follow first appearance over whole sequences, so index order would bring
    the leak back (a cold test item numbered right after its cold validation item).
    """
    items = _training_items(train_sequences, n_items)
    unique_items, first_position = np.unique(items, return_index=True)
    order = unique_items[np.argsort(first_position, kind="stable")]
    unseen = np.setdiff1d(np.arange(n_items), unique_items)
    unseen = np.random.default_rng(seed).permutation(unseen)
    numbers = np.empty(n_items, dtype=np.int64)
    numbers[np.concatenate([order, unseen]).astype(np.int64)] = np.arange(n_items) + FIRST_NUMBER
    return [str(number) for number in numbers]


def random_ids(n_items: int, seed: int, first_number: int = FIRST_NUMBER) -> list[str]:
    """RID (Sec. 3.1), the control: the numbers SID uses, dealt out at random, so the two
    differ only in whether neighbouring numbers mean anything."""
    numbers = np.random.default_rng(seed).permutation(n_items) + first_number
    return [str(number) for number in numbers]


# ---------------------------------------------------------------- collaborative (CID)

def cooccurrence_matrix(train_sequences: list[np.ndarray], n_items: int) -> sparse.csr_matrix:
    """Number of users whose training sequence holds both items (zero diagonal)."""
    items = _training_items(train_sequences, n_items)
    users = np.repeat(np.arange(len(train_sequences)), [len(s) for s in train_sequences])
    user_item = sparse.csr_matrix((np.ones(len(items)), (users, items)),
                                  shape=(len(train_sequences), n_items))
    user_item.data = np.minimum(user_item.data, 1.0)  # a repeat purchase counts once
    affinity = (user_item.T @ user_item).tocsr()
    affinity.setdiag(0)
    affinity.eliminate_zeros()
    return affinity


def _spectral_labels(affinity: sparse.csr_matrix, n_clusters: int, seed: int) -> np.ndarray:
    """Ng-Jordan-Weiss spectral clustering: top eigenvectors of D^-1/2 A D^-1/2, rows
    scaled to unit length, k-means. The sparse solver needs matrix-vector products only;
    scikit-learn's shift-invert ARPACK on the 11,924-item Toys graph ran for minutes."""
    from sklearn.cluster import KMeans  # sklearn is slow to import; only CID needs it
    from threadpoolctl import threadpool_limits

    n = affinity.shape[0]
    degree_scale = 1.0 / np.sqrt(np.asarray(affinity.sum(axis=1)).ravel())
    normalised = sparse.diags(degree_scale) @ affinity @ sparse.diags(degree_scale)
    k = min(n_clusters, n)
    if n <= max(4 * k, 300):
        _, vectors = scipy.linalg.eigh(normalised.toarray(), subset_by_index=[n - k, n - 1])
    else:
        start = np.random.default_rng(seed).uniform(-1.0, 1.0, n)
        try:
            _, vectors = eigsh(normalised, k=k, which="LA", v0=start, tol=1e-6, maxiter=20 * n)
        except ArpackNoConvergence as error:
            vectors = error.eigenvectors
    rows = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    # One thread: on a busy 2-core machine k-means' OpenMP threads wait on each other;
    # CID on Toys took 56 s with them and 19 s without.
    with threadpool_limits(limits=1):
        return KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(rows)


def _split(items: np.ndarray, affinity: sparse.csr_matrix, n_clusters: int, seed: int) -> list[np.ndarray]:
    """Children of one tree node, ordered by their smallest item. Items with no
    co-occurrence inside the node cannot be placed by the graph: they form one extra
    child; a node with no edges at all is cut into equal runs of item indices."""
    sub = affinity[items][:, items]
    connected = np.asarray(sub.sum(axis=1)).ravel() > 0
    children: list[np.ndarray] = []
    if connected.any():
        linked = items[connected]
        labels = _spectral_labels(sub[connected][:, connected], n_clusters, seed)
        children = [linked[labels == label] for label in np.unique(labels)]
        if len(children) == 1:  # k-means put everything together: split by index instead
            children = [c for c in np.array_split(linked, min(n_clusters, len(linked))) if len(c)]
    isolated = items[~connected]
    if len(isolated):
        if children:
            children.append(isolated)
        else:
            children = [c for c in np.array_split(isolated, min(n_clusters, len(isolated))) if len(c)]
    return sorted(children, key=lambda child: int(child.min()))


@dataclasses.dataclass(frozen=True)
class CollaborativeIndex:
    item_ids: list[str]
    tokens: list[str]
    depth: int  # the largest number of cluster levels above a leaf


def collaborative_ids(train_sequences: list[np.ndarray], n_items: int, cluster_size: int = 500,
                      n_clusters: int = 20, seed: int = 0, progress=None) -> CollaborativeIndex:
    """CID (Sec. 4.2): spectral clustering of the item co-occurrence graph, applied again
    to every cluster with more than ``cluster_size`` items. An item's ID is one token per
    level, ``<CI{level}_{cluster}>``, then ``<CIL{position}>`` for its place in the leaf
    cluster. Level and leaf tokens differ, so no ID is a prefix of another. Defaults are
    the authors' released run (cluster size 500, 20 clusters)."""
    if cluster_size < 1 or n_clusters < 2:
        raise BenchError(f"collaborative indexing: cluster_size={cluster_size} must be >= 1 "
                         f"and n_clusters={n_clusters} >= 2")
    affinity = cooccurrence_matrix(train_sequences, n_items)
    item_tokens: list[list[str]] = [[] for _ in range(n_items)]
    depth = 0
    pending: list[tuple[np.ndarray, int]] = [(np.arange(n_items), 0)]
    bar = progress(total=n_items, desc="CID clustering") if progress else None
    while pending:
        items, level = pending.pop()
        if len(items) <= cluster_size:
            for position, item in enumerate(items):
                item_tokens[item].append(LEAF_TOKEN.format(position))
            depth = max(depth, level)
            if bar is not None:
                bar.update(len(items))
            continue
        for index, child in enumerate(_split(items, affinity, n_clusters, seed)):
            for item in child:
                item_tokens[item].append(LEVEL_TOKEN.format(level, index))
            pending.append((child, level + 1))
    if bar is not None:
        bar.close()
    item_ids = ["".join(tokens) for tokens in item_tokens]
    used = {token for tokens in item_tokens for token in tokens}
    return CollaborativeIndex(item_ids=item_ids, tokens=sorted(used, key=_token_sort_key), depth=depth)


def _token_sort_key(token: str) -> tuple:
    return (token.startswith("<CIL"), [int(n) for n in re.findall(r"\d+", token)])


# ---------------------------------------------------------------- semantic (SemID)

@dataclasses.dataclass(frozen=True)
class SemanticIndex:
    item_ids: list[str]
    tokens: list[str]


def category_token(name: str) -> str:
    # One token per name. Whitespace would be split by the tokenizer and angle brackets
    # would make two paths spell the same string, so both become "_".
    return "<cat:" + re.sub(r"[\s<>]+", "_", name.strip()) + ">"


def semantic_ids(item_attributes: list[list[str]], max_categories: int | None = None) -> SemanticIndex:
    """SemID (Sec. 4.3): the item's category path as new tokens, one per distinct
    category name, then a number (1, 2, ...) telling apart the items on the same path.

    The path is the item's attribute list in the dataset's order (for the P5/S3Rec
    Amazon data: categories and brand). ``max_categories`` keeps only the first names,
    shortening IDs; the number still keeps every ID unique. Items with no attributes
    share the fallback token ``<cat-none>``.
    """
    if max_categories is not None and max_categories < 1:
        raise BenchError(f"semantic indexing: max_categories={max_categories} must be >= 1 or None")
    paths: list[tuple[str, ...]] = []
    for names in item_attributes:
        tokens = tuple(category_token(name) for name in names if name.strip())
        tokens = tokens[:max_categories] if max_categories is not None else tokens
        paths.append(tokens or (FALLBACK_CATEGORY_TOKEN,))
    counts: dict[tuple[str, ...], int] = {}
    item_ids = []
    for path in paths:
        counts[path] = counts.get(path, 0) + 1
        item_ids.append("".join(path) + str(counts[path]))
    used = sorted({token for path in paths for token in path})
    return SemanticIndex(item_ids=item_ids, tokens=used)
