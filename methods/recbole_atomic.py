"""The hand-off to RecBole (:mod:`methods.recbole_baselines`): a split's training part, plus each
user's validation item for early stopping, written as RecBole atomic files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.dataset import Dataset
from bench.data.split import Split
from bench.storage import atomic_write_text

RECBOLE_DATASET = "bench"
CATEGORY_FIELD = "categories"
NO_CATEGORY = "none"


def write_atomic_files(dataset: Dataset, split: Split, directory: Path, with_categories: bool) -> dict[str, Any]:
    """Write ``bench.inter`` (training part plus validation item) and ``bench.item``.

    The item file lists every harness item, so items never seen in training still get a
    RecBole id (and a score column). Returns counts and a digest of what was written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    validation_users = 0
    for user, (history, valid_items) in enumerate(zip(split.train, split.target_lists("valid"))):
        # RecBole's leave-one-out splitter validates on each user's last written item. Under
        # leave-one-out that is the validation item; under the temporal and published-split
        # protocols it is the first item of the user's validation window (early stopping then
        # watches the next item after training; the harness's evaluation uses every target).
        # A user with no validation target has the last training transition held out by
        # RecBole instead: no later window is ever written.
        valid_item = valid_items[:1]
        # A lone training item plus the validation item would make the validation item
        # RecBole's only sample, which its leave-one-out splitter assigns to training.
        written = np.append(history, valid_item) if len(history) >= 2 else history
        validation_users += len(history) >= 2 and len(valid_item) == 1
        lines.extend(f"{user}\t{item}\t{position}" for position, item in enumerate(written.tolist()))
    inter_text = "\n".join(lines) + "\n"
    if with_categories:
        names = sorted({name for attributes in dataset.item_attributes for name in attributes})
        # Attribute names may hold spaces, RecBole's token separator: write indices instead.
        token = {name: f"c{index}" for index, name in enumerate(names)}
        # An empty field reaches RecBole as NaN, which its reader fails to fill under
        # pandas 3 (copy-on-write); an item without attributes gets one "none" category.
        item_lines = [f"item_id:token\t{CATEGORY_FIELD}:token_seq"] + [
            f"{item}\t{' '.join(token[name] for name in attributes) or NO_CATEGORY}"
            for item, attributes in enumerate(dataset.item_attributes)]
        items_without_categories = sum(1 for attributes in dataset.item_attributes if not attributes)
    else:
        item_lines = ["item_id:token"] + [str(item) for item in range(dataset.n_items)]
        items_without_categories = 0
    item_text = "\n".join(item_lines) + "\n"
    atomic_write_text(directory / f"{RECBOLE_DATASET}.inter", inter_text)
    atomic_write_text(directory / f"{RECBOLE_DATASET}.item", item_text)
    digest = hashlib.sha256(inter_text.encode() + item_text.encode()).hexdigest()[:16]
    return {"validation_users": int(validation_users), "interactions_written": len(lines) - 1,
            "items_without_categories": items_without_categories, "digest": digest}
