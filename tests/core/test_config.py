import dataclasses
import re

import pytest

from bench.config import EvalConfig, parse_sets, read_config_file, resolve
from bench.errors import BenchError


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    epochs: int = 10
    learning_rate: float = 1e-3
    loss_type: str = "CE"
    use_text: bool = False
    sizes: tuple[int, ...] = (64, 64)


PROFILES = {"cpu": {"epochs": 2}, "paper": {}}


def test_layers_resolve_in_order(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('epochs = 5\nlearning_rate = 0.01\n[eval]\nmask_history = true\n')
    resolved = resolve("toy", ToyConfig, PROFILES, "cpu", read_config_file(path),
                       parse_sets(["epochs=7", "use_text=yes", "sizes=8,16"]))
    assert resolved.method == ToyConfig(epochs=7, learning_rate=0.01, use_text=True, sizes=(8, 16))
    assert resolved.evaluation == EvalConfig(mask_history=True)
    assert resolved.to_dict()["profile"] == "cpu"
    assert resolve("toy", ToyConfig, PROFILES, "cpu", {}, {}).method.epochs == 2
    assert resolve("toy", ToyConfig, PROFILES, "paper", {}, {}).method.epochs == 10


def test_unknown_key_names_key_and_method():
    with pytest.raises(BenchError, match=r"unknown config key 'epoch' for method 'toy' \(did you mean 'epochs'"):
        resolve("toy", ToyConfig, PROFILES, "cpu", {}, {"epoch": "3"})
    with pytest.raises(BenchError, match="eval"):
        resolve("toy", ToyConfig, PROFILES, "cpu", {}, {"eval.mask": "1"})


def test_bad_values_are_errors():
    with pytest.raises(BenchError, match="epochs"):
        resolve("toy", ToyConfig, PROFILES, "cpu", {}, {"epochs": "many"})
    with pytest.raises(BenchError, match="key=value"):
        parse_sets(["epochs"])
    with pytest.raises(BenchError, match="profile"):
        resolve("toy", ToyConfig, PROFILES, "gpu", {}, {})


def test_config_is_frozen():
    resolved = resolve("toy", ToyConfig, PROFILES, "cpu", {}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.method.epochs = 3


def test_bad_config_files(tmp_path):
    with pytest.raises(BenchError, match="not found"):
        read_config_file(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = = 3\n")
    with pytest.raises(BenchError, match="broken.toml"):
        read_config_file(broken)


def test_an_option_omitted_at_default_is_recorded_only_when_set():
    """``schedule_epochs`` came after runs keyed their folders with ``lr_schedule``: at its
    default the resolved config (identity and record) is what it was before the option existed."""
    from bench.engine.training import TrainingConfig

    def method_config(sets):
        return resolve("p5-sid", TrainingConfig, {"cpu": {}}, "cpu", {}, sets).to_dict()["method"]

    assert "schedule_epochs" not in method_config({}) and "lr_schedule" in method_config({})
    assert method_config({"epochs": "2", "schedule_epochs": "20"})["schedule_epochs"] == 20


def test_options_added_later_are_left_out_at_their_default_only():
    """What a run made before ``device``/``precision`` existed recorded, so its work folder is found."""
    from bench.config import asdict_before_added_options
    from bench.engine.training import TrainingConfig

    assert {"device", "precision"} & set(asdict_before_added_options(TrainingConfig())) == set()
    changed = asdict_before_added_options(TrainingConfig(precision="bf16"))
    assert changed["precision"] == "bf16" and "device" not in changed
    assert set(asdict_before_added_options(TrainingConfig())) | {"device", "precision", "lr_schedule", "warmup_steps",
                                                                  "schedule_epochs", "target_validation"} \
        == set(dataclasses.asdict(TrainingConfig()))


def test_a_run_keyed_before_options_existed_keeps_its_work_folder(tmp_path, isolated_cache):
    from bench.runner import RunRequest, _work_dir, resolve_run_config, work_dir_for

    request = RunRequest(method="sasrec", dataset="demo")
    _, resolved = resolve_run_config(request)
    now, earlier = _work_dir(request, resolved.to_dict(), "d"), _work_dir(request, resolved.before_added_options(), "d")
    assert now != earlier and work_dir_for(request, resolved, "d") == now  # neither exists: a new run's key
    earlier.mkdir(parents=True)
    assert work_dir_for(request, resolved, "d") == earlier
    now.mkdir(parents=True)
    assert work_dir_for(request, resolved, "d") == now  # a run with today's key wins
    _, bf16 = resolve_run_config(dataclasses.replace(request, sets={"precision": "bf16"}))
    assert work_dir_for(request, bf16, "d") not in (now, earlier)


def test_run_options_are_recorded_apart_from_the_config_that_keys_the_work_folder():
    from bench.config import RunOptions

    plain = resolve("m", ToyConfig, {}, "cpu", {}, {})
    marked = resolve("m", ToyConfig, {}, "cpu", {}, {"diagnostic": "true", "tracker": "tensorboard"})
    assert marked.run == RunOptions(tracker="tensorboard", diagnostic=True) and plain.run == RunOptions()
    assert marked.to_dict() == plain.to_dict()  # same training, same work folder
    with pytest.raises(BenchError, match="tracker.*must be one of"):
        resolve("m", ToyConfig, {}, "cpu", {}, {"tracker": "neptune"})


@pytest.mark.parametrize("config_class, values, message", [
    ("methods.recbole_configs:TransformerConfig", {"hidden_size": 64, "n_heads": 3},
     "config key 'hidden_size' must be a multiple of 'n_heads' (3), got 64"),
    ("methods.unisrec.method:UniSRecConfig", {"hidden_size": 300, "n_heads": 7},
     "config key 'hidden_size' must be a multiple of 'n_heads' (7), got 300"),
    ("methods.rpg.method:RPGConfig", {"pca_dim": 128, "n_digits": 3},
     "config key 'pca_dim' must be a multiple of 'n_digits' (3), got 128: each digit quantises an equal slice"),
    ("methods.idgenrec.generator:IDGeneratorConfig", {"generator_d_model": 30, "generator_num_heads": 4},
     "config key 'generator_d_model' must be a multiple of 'generator_num_heads' (4), got 30"),
])
def test_a_width_not_split_evenly_is_refused_naming_both_keys(config_class, values, message):
    import importlib

    module, name = config_class.split(":")
    with pytest.raises(BenchError, match=re.escape(message)):
        getattr(importlib.import_module(module), name)(**values)
