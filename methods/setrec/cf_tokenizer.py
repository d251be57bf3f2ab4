"""SETRec's CF tokenizer: item embeddings of a SASRec trained on the training split (Sec. 3.1.1).

The SASRec is the harness's own RecBole plugin (:class:`methods.recbole_baselines.SASRec`),
64-dimensional as in the official code. It is trained on the *training part* of each
user's sequence only: the plugin's early stopping needs a validation item, so it is given
an inner leave-one-out of the training part (the last training item validates, the rest
trains). Neither the split's validation targets nor its test targets are ever written.
The plugin trains on users with at least two items before their validation item, so a
user with one or two training items contributes only the first (no inner validation);
users with no training item are left out (only item embeddings are wanted).

The embeddings are trained once per (training sequences, seed, SASRec options), kept under
``<cache>/setrec-cf/<key>/`` and reused by every SETRec run with that key (ablations,
reruns); they stay frozen inside SETRec.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.dataset import Dataset
from bench.data.prepare import cache_root
from bench.data.split import Split
from bench.method import RunContext, TrainingData
from bench.shared_artifacts import atomic_save, shared_artifact

EMBEDDINGS_FILE = "item-embeddings.npy"
FACTS_FILE = "facts.json"


def training_only_split(split: Split) -> Split:
    """An inner leave-one-out over ``split.train`` alone, for the SASRec's early stopping.

    A lone training item stays training data; its user's inner validation item is -1, which
    the plugin never writes (it writes only the history of a user with fewer than two items
    before validation). The inner "test" item repeats the inner validation item; the plugin
    never writes or reads a test item."""
    kept = [np.asarray(history, dtype=np.int64) for history in split.train if len(history) > 0]
    train = [history[:-1] if len(history) >= 2 else history for history in kept]
    inner_valid = [history[-1:] if len(history) >= 2 else np.asarray([-1], dtype=np.int64) for history in kept]
    return Split(train=train, valid_items=inner_valid, test_items=[items.copy() for items in inner_valid],
                 n_items=split.n_items)


def _key(split: Split, sasrec_options: dict[str, Any], seed: int) -> str:
    digest = hashlib.sha256(json.dumps({"options": sasrec_options, "seed": seed, "n_items": split.n_items},
                                       sort_keys=True).encode())
    for history in split.train:
        digest.update(np.asarray(history, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()[:16]


def cf_item_embeddings(dataset: Dataset, split: Split, sasrec_options: dict[str, Any],
                       context: RunContext) -> tuple[np.ndarray, dict[str, Any]]:
    """SASRec item embeddings ``[n_items, hidden_size]`` (float32) and facts for the record.

    SETRec runs sharing a CF tokenizer (ablations started together) train it once; in a run of
    several processes the main one trains it alone and the others read it. Its facts file is
    written after the embeddings, so the facts' presence means the whole tokenizer is there."""
    directory = cache_root() / "setrec-cf" / _key(split, sasrec_options, context.seed)
    shared = shared_artifact(directory / FACTS_FILE, context.runtime,
                             lambda: _trained(dataset, split, sasrec_options, context, directory),
                             lambda facts, stream: stream.write(json.dumps(facts, default=str).encode("utf-8")),
                             lambda path: json.loads(path.read_text()))
    return np.load(directory / EMBEDDINGS_FILE), {**shared.value, "reused": shared.reused}


def _trained(dataset: Dataset, split: Split, sasrec_options: dict[str, Any], context: RunContext,
             directory: Path) -> dict[str, Any]:
    """Train the SASRec, save its item embeddings; its facts for the record."""
    from bench import config as config_module
    from bench.runtime import hold_threads
    from methods.recbole_baselines import SASRec

    resolved = config_module.resolve("sasrec", SASRec.config_class, SASRec.profiles, "cpu", {}, sasrec_options)
    # The SASRec trains on the run's device, with its own precision (RecBole's autocast
    # switch) and threads, as a RecBole run of its own would.
    hold_threads(resolved.method.threads)
    sasrec = SASRec(resolved.method, dataclasses.replace(context, work_dir=directory / "sasrec"))
    sasrec.context.work_dir.mkdir(parents=True, exist_ok=True)
    inner = training_only_split(split)
    sasrec.fit(TrainingData(dataset=dataset, split=inner))
    weights = sasrec.model.item_embedding.weight.detach().cpu().numpy()
    embeddings = np.ascontiguousarray(weights[sasrec.item_to_internal], dtype=np.float32)
    atomic_save(directory / EMBEDDINGS_FILE, lambda stream: np.save(stream, embeddings, allow_pickle=False))
    return {"options": dataclasses.asdict(resolved.method), "key": directory.name,
            "users": inner.n_users, **{k: v for k, v in sasrec.metadata().items() if k != "recbole_version"}}
