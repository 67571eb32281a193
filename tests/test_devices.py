"""Device and precision options: clear messages instead of late failures."""

import pytest
import torch

from vidcolor.devices import resolve_device, resolve_precision
from vidcolor.errors import OptionError


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"),
                                                 (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu_is_refused():
    with pytest.raises(OptionError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_unknown_device():
    with pytest.raises(OptionError, match="--device must be one of"):
        resolve_device("tpu")


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_half_precision_on_cpu_is_refused(name):
    with pytest.raises(OptionError, match="needs a CUDA GPU"):
        resolve_precision(name, torch.device("cpu"))


def test_precisions_on_cpu():
    assert resolve_precision("auto", torch.device("cpu")) == (torch.float32, None)
    assert resolve_precision("float64", torch.device("cpu")) == (torch.float64, None)
    with pytest.raises(OptionError, match="--precision must be one of"):
        resolve_precision("float8", torch.device("cpu"))


def test_half_precision_on_cuda_is_autocast():
    assert resolve_precision("float16", torch.device("cuda")) == (torch.float32, torch.float16)
