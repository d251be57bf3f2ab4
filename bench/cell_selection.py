"""Which records fill a table cell: selection on validation, never recency.

The records that fit a cell (its dataset, data variant and column, not ``diagnostic``) are
grouped by configuration (the seeds of one configuration together). Of several
configurations the cell takes, in this order:

1. the only one;
2. the one with the best validation score (NDCG@10, the score model selection uses, the mean
   over its seeds) when every configuration was validated on the same validation users; or,
   when they were validated on different samples of the same validation users (a seeded sample,
   or all of them), the best one if its lead over every other is beyond sampling error:
   more than ``SAMPLE_LEAD_Z`` standard errors, each bounded by sqrt(m (1 - m) / n), which holds
   for any per-user score in [0, 1] with mean m over n users;
3. else the method's declared default configuration, saying why validation could not decide:
   the one configuration that holds the method's defaults (its config class under the record's
   profile) on every option where the configurations differ;
4. else none: the cell stays empty and ``--explain`` says why.

Configurations are compared without the options that say where a run ran (``device``,
``threads``) and without options a record predates (``added_later`` ones at their default), so
one configuration run before and after such an option existed is one configuration.

Every choice keeps its evidence (:class:`Choice`) for ``bench table --explain`` and the report.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Mapping, Sequence

from bench import config as config_module
from bench.devices import AUTO_PRECISION_CHOICES
from bench.errors import BenchError
from bench.identity import identity_digest, method_class, record_configuration
from bench.registry import methods
from bench.statistics import seed_groups

VALIDATION_METRIC = "NDCG@10"
# Standard errors a score on one sample of the validation users must lead by to beat a score
# on another sample (two-sided p of about 0.001 under the normal approximation).
SAMPLE_LEAD_Z = 3.29
# What a method records in method_metadata.stopped_by when a wall-clock budget ended training.
WALL_CLOCK_STOP = "time budget"


def is_diagnostic(record: Mapping[str, Any]) -> bool:
    """A run made to look at something (``--set diagnostic=true``): it never fills a cell."""
    return bool(record.get("run_options", {}).get("diagnostic", False))


def stopped_by_wall_clock(record: Mapping[str, Any]) -> bool:
    """Training ended by a wall-clock budget: its epoch count depends on the machine's load."""
    return record.get("method_metadata", {}).get("stopped_by") == WALL_CLOCK_STOP


def config_digest(record: Mapping[str, Any]) -> str:
    """12 hex digits of the record's configuration (:func:`bench.identity.record_configuration`)."""
    return identity_digest(record_configuration(record))[:12]


def configuration_key(record: Mapping[str, Any]) -> str:
    """Records of one configuration on one split share it
    (:func:`bench.identity.record_configuration`); seeds do not count."""
    return json.dumps({"data": record["split"].get("digest"), "config": record_configuration(record)}, sort_keys=True)


@dataclasses.dataclass(frozen=True)
class ValidationUsers:
    """The users a record's validation score was measured on."""

    # The split and the users, in words precise enough that two equal strings mean the same users.
    words: str
    # What samples of these users share (the split under one evaluation setting) and how many
    # were ranked; None for RecBole's own validation ranking, another evaluator.
    population: str | None
    n_users: int | None


def validation(record: Mapping[str, Any]) -> tuple[float, ValidationUsers] | None:
    """The record's validation score and its users: the final model's validation ranking
    (``eval.include_validation``), else the best score of the model selection's curve (the
    selected weights) or of a parameter search's candidates (the chosen parameters), else
    RecBole's own validation ranking. None without any."""
    split = f"split {record['split'].get('digest', '')}"
    metadata = record.get("method_metadata", {})
    if VALIDATION_METRIC in record.get("validation_metrics", {}):
        masked = _qualifiers({"mask_history": record["config"].get("eval", {}).get("mask_history")})
        return record["validation_metrics"][VALIDATION_METRIC], \
            ValidationUsers(f"{split}: every validation user", split + masked, record["split"].get("valid_users"))
    # The model selection's curve (epochs), or a parameter search's candidates (item-kNN, SKNN).
    candidates = list(record.get("training_curve", ())) + list((metadata.get("selection") or {}).get("tried", ()))
    scores = [entry["validation"][VALIDATION_METRIC] for entry in candidates
              if VALIDATION_METRIC in entry.get("validation", {})]
    users = _selection_users(record, split)
    if scores and users:
        return max(scores), users
    if "recbole_valid_ndcg@10" in metadata:
        return metadata["recbole_valid_ndcg@10"], \
            ValidationUsers(f"{split}: RecBole's validation ranking of {metadata.get('validation_users')} users",
                            None, None)
    return None


def _selection_users(record: Mapping[str, Any], split: str) -> ValidationUsers | None:
    """The users the engine's model selection ranked (:mod:`bench.engine.selection`): from the
    record's ``selection``, or for a record made before its method recorded one (SETRec's), from
    its ``validation_users`` option, which the engine samples with the run's seed."""
    selection = record.get("method_metadata", {}).get("selection") or {}
    every = record["split"].get("valid_users")
    if "n_users" in selection:
        sample = selection["n_users"] if selection.get("users") == "sample" else 0
        qualifiers, n_users = _qualifiers(selection), selection["n_users"]
    elif "validation_users" in record["config"]["method"]:
        sample = record["config"]["method"]["validation_users"]
        qualifiers, n_users = "", sample or every
    else:
        return None
    words = f"{sample} validation users drawn with seed {record.get('seed')}" if sample else "all validation users"
    return ValidationUsers(f"{split}: {words}{qualifiers}", split + qualifiers, n_users)


def _qualifiers(selection: Mapping[str, Any]) -> str:
    """What else a model selection's ``selection`` says its users were ranked on."""
    where = f", on {selection['on']}" if selection.get("on") else ""
    return where + (", history masked" if selection.get("mask_history") else "")


@functools.lru_cache(maxsize=None)
def _default_method_config(method: str, profile: str) -> str | None:
    found = method_class(method)
    if found is None:
        return None
    resolved = config_module.resolve(method, found.config_class, found.profiles, profile, {}, {})
    return json.dumps(dataclasses.asdict(resolved.method), sort_keys=True)


def _differing_options(groups: Sequence[Sequence[dict[str, Any]]]) -> set[str]:
    configs = [record_configuration(group[0])["method"] for group in groups]
    keys = set().union(*configs)
    return {key for key in keys if len({json.dumps(config.get(key)) for config in configs}) > 1}


def _holds(key: str, recorded: Any, default: Any) -> bool:
    if key == "precision" and default == "auto":
        # The runner records what auto resolved to, and not whether auto chose it or the user
        # did: on a CPU with bf16 an explicit fp32 run counts as default too (validation decides first).
        return recorded == "auto" or recorded in AUTO_PRECISION_CHOICES
    return json.dumps(recorded) == json.dumps(default)


def at_default(record: Mapping[str, Any], options: set[str]) -> bool:
    """Whether the record holds its method's default (under its profile) on ``options``."""
    default_text = _default_method_config(record["method"], record.get("profile", "cpu"))
    if default_text is None:
        return False
    default = json.loads(default_text)
    recorded = record_configuration(record)["method"]
    return all(key in default and _holds(key, recorded.get(key, default[key]), default[key]) for key in options)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One configuration that fits a cell: its records (one per seed) and their evidence."""

    records: tuple[dict[str, Any], ...]
    validation: float | None  # mean over the seeds; None when a seed has no validation score
    validation_users: str | None
    # Bound on the squared standard error of ``validation`` and the validation users' population
    # (:func:`validation`); None when not known for every seed.
    sampling: tuple[float, str] | None
    default: bool  # holds the method's defaults where the configurations of its cell differ
    # Earlier runs of the same configuration and seed, which the later run replaces.
    replaced: tuple[str, ...] = ()

    @property
    def run_ids(self) -> list[str]:
        return [record["run_id"] for record in self.records]

    @property
    def digest(self) -> str:
        return config_digest(self.records[0])

    @property
    def wall_clock(self) -> bool:
        return any(stopped_by_wall_clock(record) for record in self.records)


@dataclasses.dataclass(frozen=True)
class Choice:
    chosen: Candidate | None
    rule: str  # "only configuration", "best validation", "default configuration", "none"
    reason: str
    candidates: tuple[Candidate, ...]


def candidate(group: Sequence[dict[str, Any]], options: set[str], replaced: Sequence[str] = ()) -> Candidate:
    found = [validation(record) for record in group]
    complete = all(item is not None for item in found)
    users = " + ".join(sorted({item[1].words for item in found})) if complete else None
    score = sum(item[0] for item in found) / len(found) if complete else None
    default = bool(options) and all(at_default(record, options) for record in group)
    return Candidate(tuple(group), score, users, _sampling(found) if complete else None, default, tuple(replaced))


def _sampling(found: Sequence[tuple[float, ValidationUsers]]) -> tuple[float, str] | None:
    """The bound on the squared standard error of the seeds' mean score (at most the largest
    seed's, m (1 - m) / n) and the population its users come from; None if unknown."""
    populations = {users.population for _, users in found}
    if None in populations or len(populations) > 1 or not all(users.n_users for _, users in found):
        return None
    return max(_variance_bound(score, users.n_users) for score, users in found), populations.pop()


def _variance_bound(score: float, n_users: int) -> float:
    """m (1 - m) / n: the largest variance of a mean m of n per-user scores in [0, 1]."""
    mean = min(max(score, 0.0), 1.0)
    return mean * (1.0 - mean) / n_users


def _clear_lead_on_samples(candidates: Sequence[Candidate]) -> Candidate | None:
    """The best-validated candidate when all were validated on samples of one population of
    users and its lead over every other exceeds ``SAMPLE_LEAD_Z`` bounded standard errors."""
    if any(c.validation is None or c.sampling is None for c in candidates) \
            or len({c.sampling[1] for c in candidates}) > 1:
        return None
    best = _best_on_validation(candidates)
    clear = all(best.validation - c.validation > SAMPLE_LEAD_Z * (best.sampling[0] + c.sampling[0]) ** 0.5
                for c in candidates if c is not best)
    return best if clear else None


def _best_on_validation(candidates: Sequence[Candidate]) -> Candidate:
    # Ties go to the default configuration, then to the configuration digest (never to recency).
    return max(candidates, key=lambda c: (c.validation, c.default, c.digest))


def _undecided_by_validation(candidates: Sequence[Candidate]) -> str | None:
    """Why validation cannot decide between ``candidates`` (None when it can)."""
    missing = [c for c in candidates if c.validation is None]
    if missing:
        return f"no validation score for {', '.join(c.digest for c in missing)}"
    if len({c.validation_users for c in candidates}) > 1:
        return "validation users differ (" + "; ".join(f"{c.digest}: {c.validation_users}" for c in candidates) + ")"
    return None


def choose(records: Sequence[dict[str, Any]]) -> Choice:
    """The configuration that fills a cell, among the ``records`` that fit it."""
    groups = seed_groups(records, key=configuration_key)
    options = _differing_options(groups) if len(groups) > 1 else set()
    kept = {record["run_id"] for group in groups for record in group}
    candidates = tuple(candidate(group, options, [r["run_id"] for r in records if r["run_id"] not in kept
                                                  and configuration_key(r) == configuration_key(group[0])])
                       for group in groups)
    if not candidates:
        return Choice(None, "none", "no record fits this cell", ())
    if len(candidates) == 1:
        return Choice(candidates[0], "only configuration", "the one configuration with records for this cell",
                      candidates)
    why_not = _undecided_by_validation(candidates)
    if why_not is None:
        best = _best_on_validation(candidates)
        return Choice(best, "best validation", f"best {VALIDATION_METRIC} on the same validation users "
                      f"({best.validation_users})", candidates)
    leader = _clear_lead_on_samples(candidates)
    if leader is not None:
        return Choice(leader, "best validation", f"best {VALIDATION_METRIC}, on different samples of the same "
                      f"validation users, by more than {SAMPLE_LEAD_Z} standard errors over every other "
                      f"configuration ({why_not})", candidates)
    defaults = [c for c in candidates if c.default]
    if len(defaults) == 1:
        return Choice(defaults[0], "default configuration", f"the method's default on the options where the "
                      f"configurations differ ({', '.join(sorted(options))}): {why_not}", candidates)
    if defaults and _undecided_by_validation(defaults) is None:
        best = _best_on_validation(defaults)
        return Choice(best, "default configuration", f"best {VALIDATION_METRIC} of the {len(defaults)} default "
                      f"configurations (profiles) on the same validation users: {why_not}", candidates)
    return Choice(None, "none", f"{len(candidates)} configurations, {why_not}, and "
                  f"{len(defaults) or 'none'} at the method's default configuration", candidates)
