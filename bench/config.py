"""Configuration: dataclasses with defaults, resolved once, validated, frozen, recorded.

Resolution order (later wins): dataclass defaults -> the method's profile overrides
(``paper`` or ``cpu``) -> ``--config FILE`` -> repeated ``--set key=value``. Keys
prefixed ``eval.`` address the evaluation protocol (:class:`EvalConfig`), keys prefixed
``data.`` the preparation of a user dataset (:class:`DataConfig`), the keys of
:class:`RunOptions` (``tracker``, ``diagnostic``) the run itself, every other key
addresses the method's own config class. An unknown key is an error that names
the key and the method.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping

from bench.errors import BenchError

PROFILES = ("cpu", "paper")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The evaluation protocol, identical for every method."""

    mask_history: bool = dataclasses.field(
        default=False,
        metadata={"help": "exclude items of the user's history (other than the target) from the ranking; "
                          "off as in the IDGenRec/P5 evaluation"})
    batch_size: int = dataclasses.field(default=256, metadata={"help": "users ranked per batch"})
    cutoffs: tuple[int, ...] = dataclasses.field(default=(5, 10), metadata={"help": "k of HR@k and NDCG@k"})
    include_validation: bool = dataclasses.field(
        default=False, metadata={"help": "also evaluate on the validation targets and record them"})
    protocol: Literal["auto", "leave-one-out", "temporal", "files"] = dataclasses.field(
        default="auto",
        metadata={"help": "split protocol: leave-one-out (last item test, second last validation); temporal "
                          "(global time cut 8:1:1, SETRec); files (a published NAME.train/valid/test.inter "
                          "split); auto = files for a published split, else leave-one-out"})


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Preparation options for user datasets in RecBole atomic files (``data.*`` keys)."""

    rating_threshold: float | None = dataclasses.field(
        default=None,
        metadata={"help": "keep only interactions with rating >= this value (needs a rating:float column); "
                          "none = keep every interaction, as implicit feedback"})
    k_core: int = dataclasses.field(
        default=0,
        metadata={"help": "repeatedly drop users and items with fewer than k interactions until none is left "
                          "(0 = no filtering; the Amazon data of the papers is 5-core)"})
    item_attributes_from: str | None = dataclasses.field(
        default=None,
        metadata={"help": "an IDGenRec/OpenP5 folder whose item2attributes.json and datamaps.json give the items "
                          "their attributes (categories, brand) by raw item ID, for an atomic folder without them "
                          "(SETRec's split of Toys takes those of ../shared/data/amazon-toys-p5-order: P5-SemID, "
                          "FDSA and S3Rec read them); the item text is unchanged"})

    def is_default(self) -> bool:
        return self == DataConfig()

    def filters_rows(self) -> bool:
        """Whether these options drop interactions (a published split is read as given)."""
        return self.rating_threshold is not None or self.k_core > 0


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Options of the run itself, not of what it trains: they are recorded (``run_options``)
    but are no part of the work folder's key, so they never cause a training to start anew."""

    tracker: Literal["none", "tensorboard", "mlflow", "wandb"] = dataclasses.field(
        default="none",
        metadata={"help": "also log the training curve and the final metrics to this experiment tracker, "
                          "written under the run's work folder (wandb: offline); docs/trackers.md"})
    diagnostic: bool = dataclasses.field(
        default=False,
        metadata={"help": "a run made to look at something (a learning rate, a bug): its record stays in the "
                          "store but never fills a table cell"})


RUN_OPTION_KEYS = tuple(f.name for f in dataclasses.fields(RunOptions))


@dataclasses.dataclass(frozen=True)
class Range:
    """The values an option accepts (each value, for a tuple option), and how an error says so."""

    accepts: Callable[[Any], bool]
    description: str


AT_LEAST_ONE = Range(lambda value: value >= 1, "at least 1")
NON_NEGATIVE = Range(lambda value: value >= 0, "0 or more")
POSITIVE = Range(lambda value: value > 0, "positive")
UNIT_INTERVAL = Range(lambda value: 0 <= value <= 1, "in [0, 1]")
BELOW_ONE = Range(lambda value: 0 <= value < 1, "in [0, 1)")


def option(default: Any, help_text: str, added_later: bool = False, range: Range | None = None,
           omitted_at_default: bool = False) -> Any:
    """A config field with its default and its help text (the one place that text lives).
    ``added_later``: the option came after runs had been made, and its default does what those
    runs did, so a run at the default still finds such a run's work folder
    (:func:`asdict_before_added_options`). ``range``: the values it accepts, checked when the
    options are made (:class:`Options`); a ``Literal`` annotation names the accepted words.
    ``omitted_at_default``: the resolved config (a run's identity and record) leaves the option
    out where it holds its default (:func:`recorded_options`), so adding it moves no run's work
    folder or identity, whichever option came before it; a new ``added_later`` option says it."""
    metadata = {"help": help_text, **({"added_later": True} if added_later else {}),
                **({"omitted_at_default": True} if omitted_at_default else {}),
                **({"range": range} if range is not None else {})}
    return dataclasses.field(default=default, metadata=metadata)


def declared_later(owner: type, name: str) -> Any:
    """``owner``'s option ``name`` declared again with ``added_later``: for a subclass whose
    earlier runs predate an option it inherits (the default must do what those runs did)."""
    inherited = owner.__dataclass_fields__[name]
    return dataclasses.field(default=inherited.default, metadata={**inherited.metadata, "added_later": True})


class Options:
    """Base of an options dataclass: made with a value out of a field's ``range`` or a word not
    in its ``Literal``, it raises a BenchError naming the field. A subclass that gives a field
    another default keeps the range declared above it. A subclass's ``__post_init__`` calls
    ``super().__post_init__()`` first, then checks what ties several fields together."""

    # How an error names one of these options.
    option_word: ClassVar[str] = "config key"

    def __post_init__(self) -> None:
        literals, ranges = _declared_values(type(self))
        for name, value in vars(self).items():
            check_option(f"{self.option_word} '{name}'", value, literals.get(name), ranges.get(name))

    def require_multiple(self, name: str, of: str, why: str = "") -> None:
        """Field ``name`` is a multiple of field ``of`` (a width split evenly over heads or
        digits); else a BenchError naming both, with ``why`` after it."""
        value, divisor = getattr(self, name), getattr(self, of)
        if value % divisor:
            raise BenchError(f"{self.option_word} '{name}' must be a multiple of '{of}' ({divisor}), got {value}{why}")


@functools.cache
def _declared_values(options_class: type) -> tuple[dict[str, tuple[Any, ...]], dict[str, Range]]:
    """Per field: the words of its ``Literal``, and its range (the nearest class's that declares one)."""
    hints = typing.get_type_hints(options_class)
    literals = {name: typing.get_args(hint) for name, hint in hints.items() if typing.get_origin(hint) is Literal}
    ranges: dict[str, Range] = {}
    for declaring in reversed(options_class.__mro__):
        for name, field in vars(declaring).get("__dataclass_fields__", {}).items():
            if field.metadata.get("range") is not None:
                ranges[name] = field.metadata["range"]
    return literals, ranges


def check_option(named: str, value: Any, allowed: tuple[Any, ...] | None, valid: Range | None) -> None:
    """``value`` is one of ``allowed`` (a ``Literal``'s words) and in ``valid``; else a BenchError
    that begins with ``named`` (``config key 'epochs'``)."""
    if allowed is not None and value not in allowed:
        raise BenchError(f"{named} must be one of {', '.join(map(str, allowed))}; got '{value}'")
    if valid is None or value is None:
        return
    if isinstance(value, tuple):
        if not all(valid.accepts(item) for item in value):
            raise BenchError(f"{named}: every value must be {valid.description}, got {value}")
    elif not valid.accepts(value):
        raise BenchError(f"{named} must be {valid.description}, got {value}")


def _asdict_without_defaults_of(config: Any, marker: str) -> dict[str, Any]:
    """A config's fields, less the options declared with ``marker`` that hold their default."""
    values = dataclasses.asdict(config)
    return {f.name: values[f.name] for f in dataclasses.fields(config)
            if not (f.metadata.get(marker) and getattr(config, f.name) == f.default)}


def recorded_options(config: Any) -> dict[str, Any]:
    """A config's fields as its run records them and is keyed by: every field, but an
    ``omitted_at_default`` option only where it differs from its default."""
    return _asdict_without_defaults_of(config, "omitted_at_default")


def asdict_before_added_options(config: Any) -> dict[str, Any]:
    """A config's fields as a run made before its ``added_later`` options recorded them: those
    options are left out where they hold their default."""
    return _asdict_without_defaults_of(config, "added_later")


def field_help(config_class: type) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(config_class)}


def _coerce(value: Any, annotation: Any, key: str, owner: str) -> Any:
    """Turn a string (from --set) or a parsed file value into the field's type."""
    origin = typing.get_origin(annotation)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if annotation in (int, float, str):
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return annotation(value)
        if origin is tuple or origin is list:
            (item_type, *_rest) = typing.get_args(annotation) or (str,)
            items = value if isinstance(value, (list, tuple)) else [
                part for part in str(value).replace(",", " ").split() if part]
            return tuple(_coerce(item, item_type, key, owner) for item in items)
        if origin is typing.Literal:
            allowed = typing.get_args(annotation)
            if value not in allowed:
                raise BenchError(f"config key '{key}' of {owner} must be one of {', '.join(map(str, allowed))}; "
                                 f"got '{value}'")
            return value
        if origin is typing.Union or origin is types.UnionType:  # Optional[X] or X | None
            if value is None or str(value).lower() == "none":
                return None
            inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)][0]
            return _coerce(value, inner, key, owner)
    except (TypeError, ValueError):
        raise BenchError(f"config key '{key}' of {owner}: cannot read '{value}' as {annotation}") from None
    return value


def _apply(config_class: type, values: dict[str, Any], overrides: Mapping[str, Any], owner: str) -> None:
    hints = typing.get_type_hints(config_class)
    for key, value in overrides.items():
        if key not in hints:
            close = difflib.get_close_matches(key, hints, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise BenchError(f"unknown config key '{key}' for {owner}{hint}")
        values[key] = _coerce(value, hints[key], key, owner)


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML or JSON file of ``key = value`` pairs; an ``[eval]`` table addresses the protocol."""
    if not path.is_file():
        raise BenchError(f"{path}: config file not found")
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            data = tomllib.loads(path.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise BenchError(f"{path}: not a valid config file: {error}") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: a config file must hold a table of key = value pairs")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("eval", "data") and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def parse_sets(pairs: typing.Iterable[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise BenchError(f"--set '{pair}': expected key=value")
        key, value = pair.split("=", 1)
        parsed[key.strip()] = value.strip()
    return parsed


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    method: Any
    evaluation: EvalConfig
    profile: str
    data: DataConfig = DataConfig()
    run: RunOptions = RunOptions()  # not in to_dict(): not part of the run's identity

    def to_dict(self) -> dict[str, Any]:
        evaluation = dataclasses.asdict(self.evaluation)
        # Defaults of options added later are left out, so the work-dir key (and resume) of a
        # run started before them is unchanged; the record's split.protocol names the protocol.
        if evaluation["protocol"] == "auto":
            del evaluation["protocol"]
        resolved = {"profile": self.profile, "method": recorded_options(self.method), "eval": evaluation}
        if not self.data.is_default():
            resolved["data"] = dataclasses.asdict(self.data)
        return resolved

    def before_added_options(self) -> dict[str, Any]:
        """:meth:`to_dict` as a run made before the method's ``added_later`` options recorded it."""
        return {**self.to_dict(), "method": asdict_before_added_options(self.method)}


def resolve_data_config(values: Mapping[str, Any]) -> DataConfig:
    """``data.*`` keys (prefix already removed) into a validated :class:`DataConfig`."""
    data_values: dict[str, Any] = {}
    _apply(DataConfig, data_values, values, "data preparation (data.*)")
    data = DataConfig(**data_values)
    if data.k_core < 0:
        raise BenchError(f"config key 'data.k_core' must be 0 (no filtering) or more, got {data.k_core}")
    return data


def resolve(method_name: str, config_class: type, profile_overrides: Mapping[str, Mapping[str, Any]],
            profile: str, file_values: Mapping[str, Any], set_values: Mapping[str, Any]) -> ResolvedConfig:
    if profile not in PROFILES:
        raise BenchError(f"unknown profile '{profile}'; known: {', '.join(PROFILES)}")
    owner = f"method '{method_name}'"
    method_values: dict[str, Any] = {}
    eval_values: dict[str, Any] = {}
    data_values: dict[str, Any] = {}
    run_values: dict[str, Any] = {}
    clash = sorted(set(RUN_OPTION_KEYS) & {f.name for f in dataclasses.fields(config_class)})
    if clash:
        raise BenchError(f"method '{method_name}': config key '{clash[0]}' is a run option's name; rename it")
    layers = [profile_overrides.get(profile, {}), file_values, set_values]
    for layer in layers:
        _apply(RunOptions, run_values, {k: v for k, v in layer.items() if k in RUN_OPTION_KEYS}, "the run")
        method_layer = {k: v for k, v in layer.items() if not k.startswith(("eval.", "data."))
                        and k not in RUN_OPTION_KEYS}
        eval_layer = {k[len("eval."):]: v for k, v in layer.items() if k.startswith("eval.")}
        data_values.update({k[len("data."):]: v for k, v in layer.items() if k.startswith("data.")})
        _apply(config_class, method_values, method_layer, owner)
        _apply(EvalConfig, eval_values, eval_layer, "the evaluation protocol (eval.*)")
    evaluation = EvalConfig(**eval_values)
    if not evaluation.cutoffs or min(evaluation.cutoffs) < 1:
        raise BenchError("config key 'eval.cutoffs' must hold positive integers")
    return ResolvedConfig(method=config_class(**method_values), evaluation=evaluation, profile=profile,
                          data=resolve_data_config(data_values), run=RunOptions(**run_values))
