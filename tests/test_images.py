"""Still images: decoding any mode, EXIF orientation, 16 bits, folders, saving."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from clips import make_image_folder, pattern_frame, write_png
from vidcolor.errors import InputError, OutputError, RefImageError
from vidcolor.io.images import (
    EXIF_ORIENTATION_TAG, IMAGE_EXTENSIONS, apply_exif_orientation, image_size, is_image_path,
    list_image_folder, load_image, natural_sort_key, save_image,
)


def _jpeg_with_orientation(path, rgb, orientation):
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    Image.fromarray(rgb).save(path, format="JPEG", quality=90, exif=exif.tobytes())


def _decode_with_pyav(path):
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        deep = frame.format.components[0].bits > 8
        return frame.to_ndarray(format="rgb48le" if deep else "rgb24")


def test_extensions_and_is_image_path():
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"} == set(IMAGE_EXTENSIONS)
    assert is_image_path("a/B.JPG") and is_image_path("x.tiff")
    assert not is_image_path("clip.mp4") and not is_image_path("noext")


def test_natural_sort_orders_numbers_by_value():
    names = ["frame10.png", "frame2.png", "Frame3.png", "frame1.png", "frame02b.png"]
    assert sorted(names, key=natural_sort_key) == [
        "frame1.png", "frame2.png", "frame02b.png", "Frame3.png", "frame10.png"]


def test_load_8bit_png_is_exact(tmp_path):
    rgb = pattern_frame(2, 33, 17)  # odd size on purpose
    write_png(tmp_path / "a.png", rgb)  # written by ffmpeg's encoder, read by Pillow
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (17, 33, 3)
    np.testing.assert_array_equal(out, rgb)


def test_load_16bit_rgb_png_keeps_16_bits(tmp_path):
    rgb = pattern_frame(1, 32, 24, bit_depth=16)
    assert np.any(rgb % 257)  # values an 8-bit decode could not reproduce
    write_png(tmp_path / "deep.png", rgb)
    out = load_image(tmp_path / "deep.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, rgb)


def test_load_16bit_tiff_written_by_tifffile(tmp_path):
    rgb = pattern_frame(4, 20, 12, bit_depth=16)
    tifffile.imwrite(tmp_path / "deep.tif", rgb, photometric="rgb")
    out = load_image(tmp_path / "deep.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, rgb)


def test_load_16bit_grey_png(tmp_path):
    grey = (np.arange(24 * 32).reshape(24, 32) * 83 % 65536).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out.dtype == np.uint16 and out.shape == (24, 32, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], grey)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1", "I;16B"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    base = Image.fromarray(pattern_frame(3, 24, 16))
    if mode == "I;16B":
        img = Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 257))
        path = tmp_path / "x.tif"
    else:
        img = base.convert(mode)
        path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    img.save(path)
    out = load_image(path)
    assert out.shape == (16, 24, 3)
    with Image.open(path) as reopened:
        if reopened.mode.startswith("I;16"):
            expected = np.repeat(np.asarray(reopened).astype(np.uint16)[:, :, None], 3, axis=2)
        else:
            expected = np.asarray(reopened.convert("RGB"))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    rgb = pattern_frame(5, 40, 24)
    path = tmp_path / f"o{orientation}.jpg"
    _jpeg_with_orientation(path, rgb, orientation)
    with Image.open(path) as img:
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    out = load_image(path)
    np.testing.assert_array_equal(out, expected)
    assert image_size(path) == (out.shape[1], out.shape[0])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_exif_orientation_on_16bit_arrays(orientation):
    rgb8 = pattern_frame(6, 10, 6)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    Image.fromarray(rgb8).save(buffer, format="PNG", exif=exif.tobytes())
    with Image.open(buffer) as img:
        expected = np.asarray(ImageOps.exif_transpose(img))
    deep = rgb8.astype(np.uint16) * 257
    np.testing.assert_array_equal(apply_exif_orientation(deep, orientation),
                                  expected.astype(np.uint16) * 257)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.png")
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(InputError, match="fake.png"):
        load_image(fake)
    with pytest.raises(RefImageError, match="fake.png"):
        load_image(fake, error=RefImageError)
    good = tmp_path / "good.png"
    write_png(good, pattern_frame(0, 64, 64))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match="cut.png") as info:
        load_image(cut)
    assert "\n" not in str(info.value)


def test_folder_natural_sort_and_filtering(tmp_path):
    names = ["f10.png", "f2.png", "f1.png", "f33.png"]
    make_image_folder(tmp_path, names)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "._f5.png").write_bytes(b"AppleDouble junk")  # hidden: ignored
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_image_folder(tmp_path)] == ["f1.png", "f2.png", "f10.png",
                                                            "f33.png"]


def test_folder_errors(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        list_image_folder(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images"):
        list_image_folder(empty)
    (empty / "readme.txt").write_text("no pictures here")
    with pytest.raises(InputError, match="no images"):
        list_image_folder(empty)
    mixed = tmp_path / "mixed"
    make_image_folder(mixed, ["a1.png", "a2.png"], size=(32, 24))
    make_image_folder(mixed, ["a3.png"], size=(30, 24))
    with pytest.raises(InputError, match=r"a3.png is 30x24"):
        list_image_folder(mixed)


def test_folder_size_check_honours_exif(tmp_path):
    folder = tmp_path / "rot"
    folder.mkdir()
    write_png(folder / "p1.png", pattern_frame(0, 24, 32))  # upright 24 wide, 32 high
    _jpeg_with_orientation(folder / "p2.jpg", pattern_frame(1, 32, 24), 6)  # stored 32x24
    assert len(list_image_folder(folder)) == 2


@pytest.mark.parametrize("depth", [8, 16])
def test_save_png_round_trip(tmp_path, depth):
    rgb = pattern_frame(7, 31, 21, bit_depth=depth)
    path = tmp_path / "out.png"
    save_image(path, rgb)
    np.testing.assert_array_equal(_decode_with_pyav(path), rgb)  # decoded by ffmpeg
    np.testing.assert_array_equal(load_image(path), rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary left


def test_save_tiff16_read_by_tifffile(tmp_path):
    rgb = pattern_frame(3, 16, 10, bit_depth=16)
    save_image(tmp_path / "o.tiff", rgb)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o.tiff"), rgb)


def test_save_jpeg_and_bmp(tmp_path):
    rgb = pattern_frame(2, 64, 48)
    save_image(tmp_path / "o.jpg", rgb)
    with Image.open(tmp_path / "o.jpg") as img:
        assert img.format == "JPEG"
        err = np.abs(np.asarray(img).astype(int) - rgb).mean()
    assert err < 2.0
    save_image(tmp_path / "o.bmp", rgb.astype(np.uint16) * 257)  # 16-bit input, 8-bit file
    with Image.open(tmp_path / "o.bmp") as img:
        np.testing.assert_array_equal(np.asarray(img), rgb)


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        save_image(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        save_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(OutputError, match="extension"):
        save_image(tmp_path / "x.gif", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_folder_listing_reads_headers_only(tmp_path, monkeypatch):
    make_image_folder(tmp_path, ["a1.png", "a2.png", "a3.png"])
    from PIL import PngImagePlugin

    def no_decode(self, *args):
        raise AssertionError("pixels decoded while listing a folder")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decode)
    assert len(list_image_folder(tmp_path)) == 3
