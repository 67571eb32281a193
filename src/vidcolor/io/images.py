"""Still images: load any mode to upright RGB, list frame folders, save PNG/JPEG/TIFF/BMP.

Stills are decoded with Pillow because the official code does so (REFERENCE.md §1) and ffmpeg's
JPEG decoder gives visibly different pixels. Pillow has no 16-bit-per-channel colour mode,
though: it silently truncates 48-bit PNG/TIFF to 8 bits. Those files (and only those) are
decoded with PyAV, whose PNG/TIFF decoders are lossless, so the pixels are the file's own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vidcolor.color.depth import UINT16_MAX, convert_depth
from vidcolor.errors import InputError, OutputError, ProcessingError, VidcolorError
from vidcolor.io import one_line_cause
from vidcolor.io.atomic import temp_beside

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

# EXIF tag 0x0112 "Orientation": 1 is upright; 2-8 are the other seven flips/rotations.
EXIF_ORIENTATION_TAG = 0x0112
# Orientations whose display swaps width and height (transpose, 90 and 270 degree rotations).
EXIF_SWAPS_AXES = frozenset({5, 6, 7, 8})

# Quality settings for our own outputs (not the official's: it writes JPEG at skimage's default).
JPEG_QUALITY = 95
JPEG_SUBSAMPLING = "4:4:4"  # keep full chroma resolution: chroma is what we produce
# zlib level for PNG frames. Measured on a 1080p photo: level 3 takes 0.35 s for 2.03 MB,
# Pillow's default 6 takes 1.16 s for 1.85 MB; a frame folder is written once per frame.
PNG_COMPRESS_LEVEL = 3

# Pillow modes that hold 16-bit greyscale (exact in Pillow), and 32-bit int greyscale that
# 16-bit PNGs/TIFFs can also open as.
_GREY16_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


def is_image_path(path: str | Path) -> bool:
    """True when the file name has a still-image extension (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def apply_exif_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored HxW(xC) array upright for EXIF orientation 1-8 (same result as Pillow's
    ``ImageOps.exif_transpose``; done in numpy so 16-bit arrays get it too)."""
    if orientation == 2:
        out = pixels[:, ::-1]
    elif orientation == 3:
        out = pixels[::-1, ::-1]
    elif orientation == 4:
        out = pixels[::-1]
    elif orientation == 5:
        out = pixels.swapaxes(0, 1)
    elif orientation == 6:
        out = np.rot90(pixels, -1)
    elif orientation == 7:
        out = np.rot90(pixels, 2).swapaxes(0, 1)
    elif orientation == 8:
        out = np.rot90(pixels, 1)
    else:  # 1, missing or out of range: EXIF readers treat as upright
        return pixels
    return np.ascontiguousarray(out)


def _exif_orientation(img: Image.Image, header_only: bool = False) -> int:
    """EXIF orientation 1-8. ``header_only``: never decode pixels to find it (Pillow's PNG
    ``getexif`` decodes the whole image when no eXIf chunk precedes the pixel data)."""
    if header_only and img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        value = img.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a malformed EXIF block must not make the picture unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _is_deep_colour(img: Image.Image) -> bool:
    """16-bit-per-channel RGB(A): Pillow opens it as 8-bit "RGB"/"RGBA" with a ";16" raw mode."""
    if img.mode not in ("RGB", "RGBA") or not img.tile:
        return False
    args = img.tile[0].args
    rawmode = args[0] if isinstance(args, tuple) else args
    return isinstance(rawmode, str) and ";16" in rawmode


def _decode_deep_colour(path: Path) -> np.ndarray:
    """Lossless 48/64-bit PNG or TIFF -> HxWx3 uint16 through ffmpeg's decoders (alpha dropped)."""
    import av  # imported here: only deep-colour stills need it

    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb48le")


def _pillow_to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> HxWx3 uint8, or uint16 for 16/32-bit greyscale."""
    if img.mode in _GREY16_MODES or img.mode == "I":
        grey = np.asarray(img)
        grey = np.clip(grey, 0, UINT16_MAX).astype(np.uint16)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        # Pillow's own conversions: palette expanded, alpha dropped, CMYK/YCbCr/LAB converted,
        # float greyscale clipped to 0-255.
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def load_image(path: str | Path, error: type[VidcolorError] = InputError) -> np.ndarray:
    """Decode a still image to upright RGB: HxWx3 uint8, or uint16 for 16-bit sources.

    ``error`` is the class raised on failure (``InputError`` for frames, ``RefImageError`` for
    a reference), always with one line naming the file and the cause.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if path.is_dir():
        raise error(f"{path}: is a folder, expected an image file")
    try:
        with Image.open(path) as img:
            deep = _is_deep_colour(img)  # before getexif(): reading EXIF may load the pixels
            orientation = _exif_orientation(img)
            if deep:
                rgb = _decode_deep_colour(path)
            else:
                img.load()
                rgb = _pillow_to_rgb(img)
    except UnidentifiedImageError:
        raise error(f"{path}: not an image Pillow can read") from None
    except Exception as exc:
        # Decoders fail in many ways (OSError for truncated data, SyntaxError for a broken
        # header, av.FFmpegError, StopIteration when PyAV finds no picture): one user line each.
        raise error(f"{path}: cannot decode image ({one_line_cause(exc)})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise error(f"{path}: decoded to shape {rgb.shape}, expected HxWx3")
    return apply_exif_orientation(rgb, orientation)


def image_size(path: str | Path, error: type[VidcolorError] = InputError) -> tuple[int, int]:
    """Upright (width, height) from the file header only (no pixel decode)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            if _exif_orientation(img, header_only=True) in EXIF_SWAPS_AXES:
                width, height = height, width
    except UnidentifiedImageError:
        raise error(f"{path}: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise error(f"{path}: cannot read image header ({one_line_cause(exc)})") from None
    return width, height


def image_bit_depth(path: str | Path) -> int:
    """8 or 16: the per-channel depth ``load_image`` will return for this file (header only)."""
    with Image.open(path) as img:
        deep = _is_deep_colour(img) or img.mode in _GREY16_MODES or img.mode == "I"
    return 16 if deep else 8


def natural_sort_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: frame2 < frame10 (case-insensitive text)."""
    parts = re.split(r"(\d+)", name)
    key = tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts if p)
    return key, name  # exact name last: a stable order for names equal up to case/zeros


def list_image_folder(path: str | Path) -> list[Path]:
    """The images of a folder, naturally sorted; all must have the same upright size.

    Hidden files (``.*``, e.g. macOS ``._frame1.png``) and non-images are ignored.
    """
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    files = [
        p for p in folder.iterdir()
        if not p.name.startswith(".") and is_image_path(p) and p.is_file()
    ]
    if not files:
        wanted = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise InputError(f"{folder}: no images in folder (looked for {wanted})")
    files.sort(key=lambda p: natural_sort_key(p.name))
    first_size = image_size(files[0])
    for other in files[1:]:
        size = image_size(other)
        if size != first_size:
            raise InputError(
                f"{folder}: images differ in size: {files[0].name} is "
                f"{first_size[0]}x{first_size[1]}, {other.name} is {size[0]}x{size[1]}"
            )
    return files


def _check_rgb(rgb: np.ndarray, path: Path) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", type(rgb).__name__)
        raise ValueError(f"{path}: expected an HxWx3 array, got {shape}")
    if rgb.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: expected uint8 or uint16 pixels, got {rgb.dtype}")


def _write_deep(path: Path, rgb: np.ndarray, codec: str, pix_fmt: str) -> None:
    """16-bit RGB through PyAV's PNG/TIFF encoder (Pillow cannot write 48-bit colour)."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype="<u2"), format="rgb48le")
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream(codec, rate=1)
        stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], pix_fmt
        out.mux(stream.encode(frame.reformat(format=pix_fmt)))
        out.mux(stream.encode(None))


def write_image_file(path: Path, rgb: np.ndarray, suffix: str) -> None:
    """Encode ``rgb`` into ``path`` in the format that ``suffix`` names (no atomicity)."""
    suffix = suffix.lower()
    deep = rgb.dtype == np.uint16
    if suffix == ".png":
        if deep:
            _write_deep(path, rgb, "png", "rgb48be")
        else:
            Image.fromarray(rgb, "RGB").save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif suffix in (".tif", ".tiff"):
        if deep:
            _write_deep(path, rgb, "tiff", "rgb48le")
        else:
            Image.fromarray(rgb, "RGB").save(path, format="TIFF", compression="tiff_deflate")
    elif suffix in (".jpg", ".jpeg"):
        Image.fromarray(convert_depth(rgb, np.uint8), "RGB").save(
            path, format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING
        )
    elif suffix == ".bmp":
        Image.fromarray(convert_depth(rgb, np.uint8), "RGB").save(path, format="BMP")
    else:
        wanted = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise OutputError(f"{path}: unknown image extension {suffix!r} (use one of {wanted})")


def save_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write HxWx3 uint8/uint16 RGB; the format follows the extension (PNG and TIFF keep 16
    bits, JPEG and BMP are 8-bit). Atomic: a hidden temporary file is renamed over ``path``."""
    path = Path(path)
    _check_rgb(rgb, path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        wanted = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise OutputError(f"{path}: unknown image extension {path.suffix!r} (use one of {wanted})")
    tmp = temp_beside(path, path.suffix)
    try:
        write_image_file(tmp, np.ascontiguousarray(rgb), path.suffix)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ProcessingError(f"{path}: cannot write image ({one_line_cause(exc)})") from exc
        raise

