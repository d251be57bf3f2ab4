"""What makes two things the same: one canonical digest for every key the harness computes.

:func:`identity_digest` is the one hash: SHA-256 over the fields as JSON with sorted keys (a
tuple and a list write alike, so a planned run's config and a stored record's agree; a value
JSON cannot hold counts by its ``str``), 16 hex digits. :func:`run_identity` is a run's: it keys
the run's work folder (:func:`bench.runner.work_dir_for`, its first 12 digits), tells a sweep
which runs are done (:mod:`bench.sweep`). :func:`record_configuration` is a record's
configuration as the tables compare it (no placement options, no ``added_later`` options at
their default); the seeds of one configuration share it (:func:`bench.statistics.seed_group_key`,
:mod:`bench.cell_selection`). Shared artifacts (``bench.shared_artifacts``)
and RecBole's finished trainings (``methods/recbole_baselines.py``) key theirs with
:func:`identity_digest` too. Changing what either hashes moves every stored key (work folders,
caches), so ``tests/core/test_identity.py`` pins known values.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any, Mapping

from bench.errors import BenchError

DIGEST_LENGTH = 16
# Options that say where a run ran, not what it trained: not part of a record's configuration.
PLACEMENT_OPTIONS = ("device", "threads")


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


def record_identity(record: Mapping[str, Any]) -> str:
    """:func:`run_identity` of a stored run record."""
    return run_identity(record["method"], record["dataset"], record["split"]["digest"], record["config"],
                        record["seed"])


@functools.lru_cache(maxsize=None)
def method_class(method: str) -> Any:
    """The registered method's class, or None for a method this installation lacks."""
    from bench.registry import methods

    try:
        return methods().get(method)
    except BenchError:
        return None


@functools.lru_cache(maxsize=None)
def added_later_defaults(method: str) -> dict[str, Any]:
    """The defaults of the method's ``added_later`` options: what a record made before them ran."""
    found = method_class(method)
    if found is None:
        return {}
    return {f.name: f.default for f in dataclasses.fields(found.config_class) if f.metadata.get("added_later")}


def record_configuration(record: Mapping[str, Any]) -> dict[str, Any]:
    """What makes a record's configuration: its resolved config without placement options and
    without ``added_later`` options at their default (:func:`bench.config.option`), so one
    configuration run before and after such an option existed is one configuration."""
    later = added_later_defaults(record["method"])
    method_config = {key: value for key, value in record["config"]["method"].items()
                     if key not in PLACEMENT_OPTIONS and not (key in later and later[key] == value)}
    return {**record["config"], "method": method_config}


def recorded_configs(resolved: Any) -> list[dict[str, Any]]:
    """The configs a finished run of ``resolved`` may have in its record, besides its own: made
    before an ``added_later`` option (here at its default), the record lacks it; and the runner
    records what ``precision=auto`` resolved to on the machine that ran it (either of
    ``AUTO_PRECISION_CHOICES``), while the plan keeps ``auto``."""
    from bench.devices import AUTO_PRECISION_CHOICES  # a module without torch: cheap

    configs = [resolved.to_dict(), resolved.before_added_options()]
    if configs[0]["method"].get("precision") == "auto":
        configs += [{**config, "method": {**config["method"], "precision": precision}}
                    for config in configs for precision in AUTO_PRECISION_CHOICES]
    return configs[1:]
