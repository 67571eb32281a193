"""``Colorizer.colorize_frames`` is a generator: inference mode is entered around the engine's
work only, never held across its ``yield`` (issue 10)."""

from __future__ import annotations

import numpy as np
import torch

from clips import pattern_frame
from vidcolor.colorizer import Colorizer

SIZE = (48, 64)  # (height, width)


def clip(shift: int, count: int = 3) -> list[np.ndarray]:
    return [pattern_frame(i + shift, SIZE[1], SIZE[0]) for i in range(count)]


def reference() -> np.ndarray:
    ref = np.zeros((*SIZE, 3), np.uint8)
    ref[:, : SIZE[1] // 2] = (200, 40, 40)
    ref[:, SIZE[1] // 2 :] = (40, 60, 200)
    return ref


def test_the_callers_loop_body_is_not_in_inference_mode():
    colorizer = Colorizer(engine="classic")
    modes = []
    for rgb in colorizer.colorize_frames(clip(0), reference()):
        modes.append(torch.is_inference_mode_enabled())
        # The caller may train on, or differentiate through, what it gets.
        x = torch.from_numpy(rgb).float().requires_grad_()
        (x * 2).sum().backward()
        assert x.grad is not None
    assert modes == [False, False, False]
    assert not torch.is_inference_mode_enabled()


def test_two_interleaved_generators_both_work():
    colorizer = Colorizer(engine="classic")
    alone = [[out.copy() for out in colorizer.colorize_frames(clip(s), reference())] for s in (0, 7)]
    first = colorizer.colorize_frames(clip(0), reference())
    second = colorizer.colorize_frames(clip(7), reference())
    together: list[list[np.ndarray]] = [[], []]
    for _ in range(3):  # one frame of each in turn, the second finishing last
        together[0].append(next(first).copy())
        assert not torch.is_inference_mode_enabled()
        together[1].append(next(second).copy())
        assert not torch.is_inference_mode_enabled()
    assert next(first, None) is None and next(second, None) is None
    assert not torch.is_inference_mode_enabled()
    for a, b in zip(alone, together):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)  # the same inputs and kernels in one process
