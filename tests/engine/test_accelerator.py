"""The runtime: option validation, sharding, autocast and training steps in one process.

Several processes are tested in tests/test_distributed.py (real torchrun, gloo)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.engine.accelerator import get_runtime, shard_indices, validate_device_options
from bench.errors import BenchError


@pytest.fixture(autouse=True)
def default_runtime_afterwards():
    """The runtime is per process: leave the default (auto, fp32) for the tests that follow."""
    yield
    get_runtime()


@pytest.mark.parametrize("device, precision, message", [
    ("gpu", "fp32", "config key 'device' must be one of auto, cpu, cuda, cuda:N, mps; got 'gpu'"),
    ("cuda:x", "fp32", "config key 'device' must be one of"),
    ("cpu", "fp8", "config key 'precision' must be one of auto, fp32, bf16, fp16; got 'fp8'"),
    ("cpu", "fp16", "config key 'precision' is 'fp16', which needs a CUDA device"),
])
def test_bad_options_name_the_key(device: str, precision: str, message: str) -> None:
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_device_options(device, precision)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_clear_error(device: str) -> None:
    with pytest.raises(BenchError, match=f"config key 'device' is '{device}' but torch finds no CUDA device"):
        validate_device_options(device, "fp32")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks the error on a machine without MPS")
def test_mps_without_mps_is_a_clear_error() -> None:
    with pytest.raises(BenchError, match="config key 'device' is 'mps' but torch finds no Apple MPS device"):
        validate_device_options("mps", "fp32")


@pytest.mark.parametrize("n, processes", [(0, 2), (1, 2), (5, 2), (7, 3), (10, 1), (4, 4)])
def test_shards_are_contiguous_and_cover_every_index_once(n: int, processes: int) -> None:
    shards = [shard_indices(n, processes, index) for index in range(processes)]
    np.testing.assert_array_equal(np.concatenate(shards), np.arange(n))
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1


def test_single_process_runtime() -> None:
    runtime = get_runtime("cpu", "fp32")
    assert get_runtime("cpu", "fp32") is runtime
    assert (runtime.num_processes, runtime.process_index, runtime.is_main_process) == (1, 0, True)
    assert runtime.device.type == "cpu"
    np.testing.assert_array_equal(runtime.shard(5), np.arange(5))
    local = np.arange(10.0).reshape(5, 2)
    np.testing.assert_array_equal(runtime.gather_shards(local, 5), local)
    with pytest.raises(RuntimeError, match="gathered 4 rows from 1 process, expected 5"):
        runtime.gather_shards(local[:4], 5)
    hardware = runtime.hardware()
    assert hardware["device_type"] == "cpu" and hardware["processes"] == 1
    assert hardware["precision"] == "fp32" and hardware["torch"] == torch.__version__
    moved = runtime.to_device({"a": torch.ones(2), "b": [torch.zeros(1), 3]})
    assert moved["a"].device.type == "cpu" and moved["b"][1] == 3


def test_bf16_autocast_runs_matmuls_in_bfloat16_on_cpu() -> None:
    runtime = get_runtime("cpu", "bf16")
    layer = torch.nn.Linear(4, 3)
    with runtime.autocast():
        output = layer(torch.randn(2, 4))
    assert output.dtype == torch.bfloat16
    assert runtime.hardware()["precision"] == "bf16"
    fp32 = get_runtime("cpu", "fp32")  # a single process may switch between runs
    with fp32.autocast():
        assert layer(torch.randn(2, 4)).dtype == torch.float32


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_step_through_the_runtime_matches_plain_torch(precision: str) -> None:
    """One process: prepare/backward/clip/step give plain torch's update (bf16 close to it)."""
    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
        return model, optimizer, scheduler

    inputs, targets = torch.randn(6, 4), torch.randn(6, 1)
    model, optimizer, scheduler = make()
    for _ in range(3):
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step(), scheduler.step(), optimizer.zero_grad()

    runtime = get_runtime("cpu", precision)
    wrapped, wrapped_optimizer, wrapped_scheduler = runtime.prepare_training(*make())
    for _ in range(3):
        with runtime.autocast():
            loss = torch.nn.functional.mse_loss(wrapped(inputs).float(), targets)
        runtime.backward(loss)
        runtime.clip_grad_norm_(wrapped.parameters(), 0.5)
        wrapped_optimizer.step(), wrapped_scheduler.step(), wrapped_optimizer.zero_grad()
    # The scheduler stepped once per optimizer step (not once per process).
    assert wrapped_scheduler.scheduler.last_epoch == scheduler.last_epoch == 3
    tolerance = 0 if precision == "fp32" else 5e-2
    for expected, found in zip(model.parameters(), runtime.unwrap(wrapped).parameters()):
        torch.testing.assert_close(found, expected, atol=tolerance, rtol=tolerance)


def test_fp32_and_bf16_runtimes_live_side_by_side_without_moving_the_runs() -> None:
    """One process, two precisions (IDGenRec): each part runs in its own runtime's precision,
    and a prepared model carries no precision of its own (Accelerate's bf16 mode wrapped it)."""
    from bench.engine.accelerator import current_runtime, runtime_for

    run = get_runtime("cpu", "fp32")
    bf16 = runtime_for("cpu", "bf16")
    assert runtime_for("cpu", "bf16") is bf16 and runtime_for("cpu", "fp32") is run
    assert current_runtime() is run  # asking for a runtime does not make it the run's
    layer = torch.nn.Linear(4, 3)
    prepared, _, _ = bf16.prepare_training(layer, torch.optim.SGD(layer.parameters(), lr=0.1), None)
    assert prepared(torch.randn(2, 4)).dtype == torch.float32  # outside bf16's autocast: fp32
    with bf16.activated():
        assert current_runtime() is bf16
        with current_runtime().autocast():
            assert prepared(torch.randn(2, 4)).dtype == torch.bfloat16
    assert current_runtime() is run
    assert get_runtime("cpu", "bf16") is bf16 and current_runtime() is bf16  # the runner's call does move it


def test_a_bf16_training_loop_leaves_the_runs_runtime_alone(tmp_path) -> None:
    """Validation inside a bf16 loop runs in bf16; after the loop the process's parts run in the
    run's precision again, so two identical fits in one process do the same thing."""
    from bench.engine.accelerator import current_runtime
    from bench.engine.training import TrainingConfig, train_model
    from bench.method import RunContext

    class Task:
        def examples_for_epoch(self, epoch):
            return list(range(8))

        def collate(self, examples):
            return {"x": torch.arange(len(examples), dtype=torch.float32)[:, None].repeat(1, 4)}

        def loss(self, model, batch):
            return model(batch["x"]).float().square().mean()

    seen = []

    class Validate:
        def __call__(self, model):
            seen.append(current_runtime().precision)
            return {"NDCG@10": 0.0}

        def describe(self):
            return {"metric": "NDCG@10"}

    validate = Validate()

    run = get_runtime("cpu", "fp32")
    config = TrainingConfig(epochs=1, batch_size=4, device="cpu", precision="bf16")
    context = RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)
    train_model(torch.nn.Linear(4, 1), Task(), config, tmp_path / "checkpoints", context, validate=validate)
    assert seen == ["bf16"]
    assert current_runtime() is run and current_runtime().precision == "fp32"


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch, native, expected):
    from bench.engine import accelerator

    monkeypatch.setattr(accelerator, "cpu_bf16_native", lambda: native)
    assert accelerator.resolve_precision("cpu", "auto") == expected
    assert accelerator.resolve_precision("cpu", "fp32") == "fp32"


def test_the_runner_records_the_precision_that_ran_not_auto(monkeypatch):
    from bench.engine import accelerator
    from bench.runner import RunRequest, resolve_on_this_machine, resolve_run_config

    monkeypatch.setattr(accelerator, "cpu_bf16_native", lambda: False)
    _, resolved = resolve_run_config(RunRequest(method="p5-sid", dataset="demo", sets={"device": "cpu"}))
    assert resolved.method.precision == "auto"  # the cpu profile's default
    assert resolve_on_this_machine(resolved).method.precision == "fp32"
    assert resolve_on_this_machine(resolved).to_dict()["method"]["precision"] == "fp32"
