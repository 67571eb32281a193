"""Device and precision options: clear messages instead of late failures."""

import pytest
import torch

from vidcolor import devices
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


def test_float16_on_cpu_is_refused():
    with pytest.raises(OptionError, match="needs a CUDA GPU"):
        resolve_precision("float16", torch.device("cpu"))


def test_bfloat16_on_cpu_only_where_native(monkeypatch):
    monkeypatch.setattr(devices, "native_cpu_bf16", lambda: "AVX512-BF16")
    assert resolve_precision("bfloat16", torch.device("cpu")) == (torch.float32, torch.bfloat16)
    monkeypatch.setattr(devices, "native_cpu_bf16", lambda: None)
    with pytest.raises(OptionError, match="emulated and slower than float32"):
        resolve_precision("bfloat16", torch.device("cpu"))


def test_native_bf16_is_named_from_the_cpu_flags():
    assert devices.native_cpu_bf16({"avx2", "avx512f", "avx512_bf16"}) == "AVX512-BF16"
    assert devices.native_cpu_bf16({"avx512f", "amx_tile", "amx_bf16"}) == "AMX"
    assert devices.native_cpu_bf16({"avx2", "avx512f"}) is None


def test_cuda_index_is_checked_against_the_devices_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(OptionError, match="2 CUDA GPU.*cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    with pytest.raises(OptionError, match="cuda:0 to cuda:1"):
        resolve_device("cuda:x")


def test_cuda_switches_are_set_explicitly():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    try:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = False, True, True
        devices.configure_cuda(torch.device("cpu"))  # no GPU: nothing touched
        assert cudnn.benchmark is False
        devices.configure_cuda(torch.device("cuda"))
        assert cudnn.benchmark is True
        assert cudnn.allow_tf32 is False and matmul.allow_tf32 is False
        devices.configure_cuda(torch.device("cuda"), allow_tf32=True)
        assert cudnn.allow_tf32 is True and matmul.allow_tf32 is True
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved


def test_precisions_on_cpu():
    assert resolve_precision("auto", torch.device("cpu")) == (torch.float32, None)
    assert resolve_precision("float64", torch.device("cpu")) == (torch.float64, None)
    with pytest.raises(OptionError, match="--precision must be one of"):
        resolve_precision("float8", torch.device("cpu"))


def test_half_precision_on_cuda_is_autocast():
    assert resolve_precision("float16", torch.device("cuda")) == (torch.float32, torch.float16)
