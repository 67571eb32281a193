"""Builders spelling out the paper's (official release's) numbers, one per subnet.

Read these against REFERENCE.md §3-5 line by line. Parameter names are ours; the mapping from
the released checkpoints' names lives in ``vidcolor.weights.convert``.
"""

from __future__ import annotations

from vidcolor.engines.devc.colorization import ColorVidNet
from vidcolor.engines.devc.correspondence import CorrespondenceNet, FeatureBranch
from vidcolor.engines.devc.vgg19 import VGG19Features


def build_vgg19() -> VGG19Features:
    """VGG19 convolutions through conv5_2 (relu5_2 is the deepest layer used)."""
    return VGG19Features(
        widths=(64, 128, 256, 512, 512),
        # VGG19 has 2, 2, 4, 4, 4 convs per block; block 5 stops after conv5_2.
        convs_per_block=(2, 2, 4, 4, 2),
    )


def build_correspondence() -> CorrespondenceNet:
    """WarpNet(1): four branches to 64 channels each at 1/4 network size, 3 residual blocks."""
    return CorrespondenceNet(
        branches=(
            # relu2_2: 128 @ 1/2 -> the stride-2 second conv brings it to 1/4
            FeatureBranch(128, 128, 64, stride=2),
            # relu3_2: 256 @ 1/4
            FeatureBranch(256, 128, 64),
            # relu4_2: 512 @ 1/8 -> nearest x2 at the end
            FeatureBranch(512, 256, 64, upsample_after=True),
            # relu5_2: 512 @ 1/16 (floored) -> nearest x2 between the convs and at the end
            FeatureBranch(512, 256, 64, upsample_between=True, upsample_after=True),
        ),
        fused_channels=256,  # 4 x 64, concatenated in the order relu2, relu3, relu4, relu5
        num_residual_blocks=3,
        embedding_channels=256,  # theta / phi: 1x1 convs 256 -> 256
    )


def build_colorization() -> ColorVidNet:
    """ColorVidNet(7): U-Net on [L, warped ab, similarity, previous Lab] -> ab."""
    return ColorVidNet(
        encoder_widths=(64, 128, 256, 512),
        first_conv_width=32,  # conv1_1 is 7 -> 32 -> 64
        encoder_depths=(3, 2, 3, 3),  # conv1_1 (two convs) + conv1_2, conv2_x, conv3_x, conv4_x
        bottleneck_depth=3,  # conv5_x, conv6_x (dilation 2) and conv7_x at 1/8
        bottleneck_dilation=2,
        decoder_depths=(3, 2, 2),  # conv8_x, conv9_x, conv10_x (the first is the upsample-conv)
    )
