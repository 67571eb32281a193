"""The Table 4 video discriminator: its layout, and that each sample's score ignores the others
(what lets DistributedDataParallel split a batch without changing any score)."""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from vidcolor.train.discriminator import VideoDiscriminator, discriminator_input


def test_layout_follows_table_4():
    d = VideoDiscriminator()
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    main = list(d.convs) + [d.last]
    assert len(main) == 7
    assert [c.out_channels for c in d.convs] == [64, 64, 128, 256, 512, 1024]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in d.convs)
    assert all(parametrize.is_parametrized(c, "weight") for c in convs)  # spectral norm on every conv
    assert d.attention.query.in_channels == 64  # self-attention after the second conv


def test_scores_are_per_sample():
    torch.manual_seed(0)
    d = VideoDiscriminator().double().eval()  # eval: no power iteration between the calls
    with torch.no_grad():
        d.attention.gamma.fill_(0.5)  # make the attention path count
        x = torch.randn(3, 6, 64, 128, dtype=torch.float64)
        together = d(x)
        alone = torch.cat([d(x[i : i + 1]) for i in range(3)])
    assert together.shape == (3,)
    # float64, same kernels: only summation order may differ (~1e-15 relative).
    assert torch.allclose(together, alone, rtol=1e-10, atol=1e-12)


def test_input_is_two_frames_at_unit_scale():
    l = torch.full((1, 1, 2, 2), 50.0)
    ab = torch.full((1, 2, 2, 2), -128.0)
    x = discriminator_input(l, ab, -l, -ab)
    assert x.shape == (1, 6, 2, 2)
    assert x[0, :, 0, 0].tolist() == [1.0, -1.0, -1.0, -1.0, 1.0, 1.0]
