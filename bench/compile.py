"""``torch.compile`` (inductor) against eager on the CPU for the devc networks.

    python bench/compile.py                    # float32, 216x384 (official network size), 3 rounds
    python bench/compile.py --networks colornet --rounds 5
    python bench/compile.py --precision bfloat16   # the CPU bf16 path (bf16 weights, channels_last)

Each network is compiled once (the time of its first call is the compile cost), then the
eager and compiled modules are called in turn (load from other processes hits both) and the
best CPU seconds per call are reported, with the largest difference of their outputs relative
to the output's largest value. Seeded weights (``tests/seeded_weights.py``): the released
layout, so the real cost. Figures only; the engine does not compile (see README).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import command_line, machine_summary, markdown_table  # noqa: E402
from tests.seeded_weights import seeded_converted  # noqa: E402
from vidcolor.engines.devc.engine import DevcEngine  # noqa: E402

NETWORK_SIZE = (216, 384)


def network_calls(engine: DevcEngine, size: tuple[int, int]):
    """(name, module, input) of each network at ``size``, inputs drawn once."""
    generator = torch.Generator().manual_seed(0)
    h, w = size
    features = [torch.randn(1, c, h // s, w // s, generator=generator)
                for c, s in ((128, 2), (256, 4), (512, 8), (512, 16))]
    rgb = torch.randn(1, 3, h, w, generator=generator) * 50
    colornet_input = torch.randn(1, 7, h, w, generator=generator)
    return {  # inputs in the dtype and memory layout the engine gives each network
        "vgg": ("VGG to relu5_2", engine.vgg, (engine._network_input(rgb, "vgg"),)),
        "warpnet": ("WarpNet frame side", engine.correspondence.embed_frames,
                    (engine._warpnet_input(features),)),
        "colornet": ("ColorVidNet", engine.colorization,
                     (engine._network_input(colornet_input, "colorization"),)),
    }


def cpu_seconds(fn, args) -> float:
    started = time.process_time()
    fn(*args)
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="vgg,warpnet,colornet")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args(argv)
    half = torch.bfloat16 if args.precision == "bfloat16" else None
    engine = DevcEngine(seeded_converted(), "cpu", torch.float32, autocast_dtype=half)
    calls = network_calls(engine, NETWORK_SIZE)
    rows = []
    with torch.inference_mode():
        for key in args.networks.split(","):
            name, module, inputs = calls[key]
            compiled = torch.compile(module)
            started = time.perf_counter()
            compiled_out = compiled(*inputs)
            compile_seconds = time.perf_counter() - started
            eager_out = module(*inputs)
            eager = min(cpu_seconds(module, inputs) for _ in range(args.rounds))
            fast = min(cpu_seconds(compiled, inputs) for _ in range(args.rounds))
            first = lambda out: out[0] if isinstance(out, (tuple, list)) else out  # noqa: E731
            a, b = first(compiled_out).float(), first(eager_out).float()
            difference = float((a - b).abs().max() / b.abs().max())
            rows.append([name, f"{compile_seconds:.0f}", f"{eager:.3f}", f"{fast:.3f}",
                         f"{eager / fast:.2f}x", f"{difference:.1e}"])
            print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"# torch.compile (inductor) vs eager, CPU {args.precision}, {NETWORK_SIZE[0]}x{NETWORK_SIZE[1]}, "
          f"CPU seconds per call, best of {args.rounds}\n{machine_summary()}; torch "
          f"{torch.__version__}; command: `{command_line()}`\n")
    print(markdown_table(["network", "compile s (wall)", "eager", "compiled", "eager / compiled",
                          "max difference / max"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
