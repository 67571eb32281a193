"""The weight registry: every installable weight set declared as data.

Nothing here downloads or converts; ``download.py`` walks these records. Adding a mirror or a
new release means adding a record, not code.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidcolor.errors import OptionError


@dataclass(frozen=True)
class ZipMember:
    """One file inside a release zip and the checkpoint kind it feeds.

    ``size`` (uncompressed bytes) and ``crc32`` are optional pins: when known they are checked
    against the zip's central directory, which is always checked against the data itself.
    """

    path_in_zip: str
    checkpoint: str
    size: int | None = None
    crc32: int | None = None


@dataclass(frozen=True)
class WeightSet:
    """A release-shaped zip (or its mirrors) and the members needed from it."""

    name: str
    description: str
    urls: tuple[str, ...]
    members: tuple[ZipMember, ...]
    archive_size: int | None = None
    license: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        kinds = [member.checkpoint for member in self.members]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"weight set {self.name!r}: a checkpoint kind appears twice: {kinds}")
        if not self.members:
            raise ValueError(f"weight set {self.name!r} declares no members")

    @property
    def checkpoints(self) -> tuple[str, ...]:
        """The checkpoint kinds this set installs, in declaration order."""
        return tuple(member.checkpoint for member in self.members)


DEVC_RELEASE_URL = (
    "https://github.com/zhangmozhe/Deep-Exemplar-based-Video-Colorization"
    "/releases/download/v1.0/colorization_checkpoint.zip"
)

# The official release zip (about 0.8 GB). Its member sizes and CRC-32s are not pinned here
# because no copy of the archive was at hand when this record was written: the zip's own central
# directory supplies them at download time and every member is checked against it.
# ``data/vgg19_gray.pth`` (~0.55 GB) is also in the zip; it is never used at inference
# (devc/REFERENCE.md section 8), so it is not fetched.
DEVC_RELEASE = WeightSet(
    name="devc",
    description="Deep Exemplar-based Video Colorization (CVPR 2019), official release v1.0",
    urls=(DEVC_RELEASE_URL,),
    members=(
        ZipMember("checkpoints/video_moredata_l1/nonlocal_net_iter_76000.pth", "nonlocal_net"),
        ZipMember("checkpoints/video_moredata_l1/colornet_iter_76000.pth", "colornet"),
        ZipMember("data/vgg19_conv.pth", "vgg19_conv"),
    ),
    archive_size=None,
    license="MIT (the LICENSE of zhangmozhe/Deep-Exemplar-based-Video-Colorization, (c) 2020 zhangmozhe)",
    notes="Iteration-76000 checkpoints of the video_moredata_l1 run, as used by the official test.py.",
)

DEFAULT = DEVC_RELEASE

REGISTRY: dict[str, WeightSet] = {DEVC_RELEASE.name: DEVC_RELEASE}


def get(name: str) -> WeightSet:
    """The registered weight set called ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise OptionError(f"unknown weight set {name!r} (known: {known})") from None
