"""What makes two things the same: one canonical digest for every key the harness computes.

:func:`identity_digest` is the one hash: SHA-256 over the fields as JSON with sorted keys (a
tuple and a list write alike, so a planned run's config and a stored record's agree; a value
JSON cannot hold counts by its ``str``), 16 hex digits. :func:`run_identity` is a run's: it keys
the run's work folder (:func:`bench.runner.work_dir_for`, its first 12 digits), tells a sweep
which runs are done (:mod:`bench.sweep`), and, without the seed, groups the seeds of one
configuration (:func:`bench.statistics.seed_group_key`). Shared artifacts (``bench.shared_artifacts``)
and RecBole's finished trainings (``methods/recbole_baselines.py``) key theirs with
:func:`identity_digest` too. Changing what either hashes moves every stored key (work folders,
caches), so ``tests/core/test_identity.py`` pins known values.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

DIGEST_LENGTH = 16


def identity_digest(fields: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over ``fields`` as canonical JSON."""
    canonical = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:DIGEST_LENGTH]


def run_identity(method: str, dataset: str, data_digest: str, config: Mapping[str, Any],
                 seed: int | None) -> str:
    """What makes two runs the same run: method, dataset, data (the split digest), resolved
    config and seed. With ``seed`` None, what the runs of one configuration share across seeds."""
    fields: dict[str, Any] = {"method": method, "dataset": dataset, "data": data_digest, "config": config}
    if seed is not None:
        fields["seed"] = seed
    return identity_digest(fields)


def record_identity(record: Mapping[str, Any], with_seed: bool = True) -> str:
    """:func:`run_identity` of a stored run record."""
    return run_identity(record["method"], record["dataset"], record["split"]["digest"], record["config"],
                        record["seed"] if with_seed else None)
