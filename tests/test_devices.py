"""The run's device options: validation naming the key, and ``precision=auto`` resolved once."""

from __future__ import annotations

import pytest
import torch

from bench.devices import DeviceConfig, validate_device_options
from bench.errors import BenchError


@pytest.mark.parametrize("device, precision, message", [
    ("gpu", "fp32", "config key 'device' must be one of auto, cpu, cuda, cuda:N, mps; got 'gpu'"),
    ("cuda:x", "fp32", "config key 'device' must be one of"),
    ("cpu", "fp8", "config key 'precision' must be one of auto, fp32, bf16, fp16; got 'fp8'"),
    ("cpu", "fp16", "config key 'precision' is 'fp16', which needs a CUDA device"),
])
def test_bad_options_name_the_key(device: str, precision: str, message: str) -> None:
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_device_options(device, precision)


def test_a_config_with_bad_device_options_is_refused_when_built() -> None:
    with pytest.raises(BenchError, match="config key 'precision' must be one of"):
        DeviceConfig(precision="fp8")
    with pytest.raises(BenchError, match="config key 'threads' must be 0 or more, got -1"):
        DeviceConfig(threads=-1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_clear_error(device: str) -> None:
    with pytest.raises(BenchError, match=f"config key 'device' is '{device}' but torch finds no CUDA device"):
        validate_device_options(device, "fp32")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks the error on a machine without MPS")
def test_mps_without_mps_is_a_clear_error() -> None:
    with pytest.raises(BenchError, match="config key 'device' is 'mps' but torch finds no Apple MPS device"):
        validate_device_options("mps", "fp32")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch, native, expected):
    from bench import devices

    monkeypatch.setattr(devices, "cpu_bf16_native", lambda: native)
    assert devices.resolve_precision("cpu", "auto") == expected
    assert devices.resolve_precision("cpu", "fp32") == "fp32"


def test_the_runner_records_the_precision_that_ran_not_auto(monkeypatch):
    from bench import devices
    from bench.runner import RunRequest, resolve_on_this_machine, resolve_run_config

    monkeypatch.setattr(devices, "cpu_bf16_native", lambda: False)
    _, resolved = resolve_run_config(RunRequest(method="p5-sid", dataset="demo", sets={"device": "cpu"}))
    assert resolved.method.precision == "auto"  # the cpu profile's default
    assert resolve_on_this_machine(resolved).method.precision == "fp32"
    assert resolve_on_this_machine(resolved).to_dict()["method"]["precision"] == "fp32"
