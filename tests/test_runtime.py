"""The runtime: sharding, autocast, training steps in one process, and the one runtime a run
builds and hands around.

Several processes are tested in tests/test_distributed.py (real torchrun, gloo)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.runtime import runtime_for, shard_indices, start_runtime


@pytest.mark.parametrize("n, processes", [(0, 2), (1, 2), (5, 2), (7, 3), (10, 1), (4, 4)])
def test_shards_are_contiguous_and_cover_every_index_once(n: int, processes: int) -> None:
    shards = [shard_indices(n, processes, index) for index in range(processes)]
    np.testing.assert_array_equal(np.concatenate(shards), np.arange(n))
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1


def test_single_process_runtime() -> None:
    runtime = runtime_for("cpu", "fp32")
    assert runtime_for("cpu", "fp32") is runtime
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
    runtime = runtime_for("cpu", "bf16")
    layer = torch.nn.Linear(4, 3)
    with runtime.autocast():
        output = layer(torch.randn(2, 4))
    assert output.dtype == torch.bfloat16
    assert runtime.hardware()["precision"] == "bf16"
    fp32 = runtime_for("cpu", "fp32")  # a process may hold both
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

    runtime = runtime_for("cpu", precision)
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


def test_fp32_and_bf16_runtimes_live_side_by_side() -> None:
    """One process, two precisions: each runtime is built once, and a prepared model carries no
    precision of its own (Accelerate's bf16 mode would have wrapped it for good)."""
    fp32, bf16 = runtime_for("cpu", "fp32"), runtime_for("cpu", "bf16")
    assert runtime_for("cpu", "bf16") is bf16 and runtime_for("cpu", "fp32") is fp32
    layer = torch.nn.Linear(4, 3)
    prepared, _, _ = bf16.prepare_training(layer, torch.optim.SGD(layer.parameters(), lr=0.1), None)
    assert prepared(torch.randn(2, 4)).dtype == torch.float32  # outside bf16's autocast: fp32
    with bf16.autocast():
        assert prepared(torch.randn(2, 4)).dtype == torch.bfloat16
    with fp32.autocast():
        assert prepared(torch.randn(2, 4)).dtype == torch.float32


def test_the_training_loop_trains_and_validates_on_the_contexts_runtime(tmp_path) -> None:
    """The loop takes the runtime the run context hands it (bf16 here), whatever the config's
    own device options say: the runner built that runtime from them once."""
    from bench.engine.training import TrainingConfig, train_model
    from bench.method import RunContext

    losses = []

    class Task:
        example_length = None

        def examples_for_epoch(self, epoch):
            return list(range(8))

        def collate(self, examples):
            return {"x": torch.arange(len(examples), dtype=torch.float32)[:, None].repeat(1, 4)}

        def loss(self, model, batch):
            output = model(batch["x"])
            losses.append(output.dtype)
            return output.float().square().mean()

    class Validate:
        def install(self, model):
            pass

        def __call__(self):
            return {"NDCG@10": 0.0}

        def describe(self):
            return {"metric": "NDCG@10"}

    config = TrainingConfig(epochs=1, batch_size=4, device="cpu", precision="fp32")
    context = RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False,
                         runtime=runtime_for("cpu", "bf16"))
    train_model(torch.nn.Linear(4, 1), Task(), config, tmp_path / "checkpoints", context, validate=Validate())
    assert losses == [torch.bfloat16, torch.bfloat16]


def test_the_run_runtime_comes_from_the_device_options_and_holds_the_threads() -> None:
    from bench.devices import DeviceConfig

    before = torch.get_num_threads()
    try:
        assert start_runtime(DeviceConfig(device="cpu", precision="bf16", threads=1)) is runtime_for("cpu", "bf16")
        assert torch.get_num_threads() == 1
        torch.set_num_threads(before)
        assert start_runtime(DeviceConfig(device="cpu", threads=0)) is runtime_for("cpu", "fp32")
        assert torch.get_num_threads() == before  # 0 keeps torch's default
        assert start_runtime(None) is runtime_for("cpu", "fp32")  # a method without device options
    finally:
        torch.set_num_threads(before)


def test_a_saved_runtime_loads_as_the_same_runtime() -> None:
    """A method saved with its context (tests/test_distributed.py) carries its runtime: loaded, it
    is the loading process's runtime of that device and precision."""
    import pickle

    bf16 = runtime_for("cpu", "bf16")
    assert pickle.loads(pickle.dumps(bf16)) is bf16


def test_a_run_context_made_without_a_runtime_computes_on_the_cpu_in_fp32(tmp_path) -> None:
    from bench.method import RunContext

    assert RunContext(work_dir=tmp_path, seed=0, profile="cpu").runtime is runtime_for("cpu", "fp32")
