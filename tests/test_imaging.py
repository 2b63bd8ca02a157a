"""Image files: orientation on reading, metadata carried to outputs, the output formats and their round trips."""

from __future__ import annotations

import io
import logging
import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile
from conftest import smooth_image
from PIL import Image, ImageCms, ImageOps

from fip.errors import InputError, UnreadablePhotoError
from fip.imaging import (
    OUTPUT_FORMATS,
    PhotoMetadata,
    apply_orientation,
    encode_image,
    encode_png,
    output_suffix,
    read_image_file,
    read_metadata,
    to_float,
    undo_orientation,
)

ORIENTATIONS = range(1, 9)
# (PIL format, suffix, save options): lossless where the format allows, so pixels compare exactly.
FORMATS = {
    "png": ("PNG", ".png", {}),
    "jpeg": ("JPEG", ".jpg", {"quality": 100, "subsampling": 0}),
    "tiff": ("TIFF", ".tif", {}),
    "webp": ("WEBP", ".webp", {"lossless": True}),
}


def exif_block(orientation: int | None = None, make: str | bytes = "fip camera", **exif_ifd) -> bytes:
    """An EXIF block with ``Make``, an Orientation when given and Exif IFD tags (``tag_<code>=value``)."""
    exif = Image.Exif()
    exif[0x010F] = make
    if orientation is not None:
        exif[0x0112] = orientation
    for name, value in exif_ifd.items():
        exif.get_ifd(0x8769)[int(name.removeprefix("tag_"))] = value
    return exif.tobytes()


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def asymmetric_image(height: int = 6, width: int = 10) -> np.ndarray:
    """uint8 ``(H, W, 3)`` whose every turn and mirror differs: random blocks of 2x2 pixels (which JPEG keeps)."""
    blocks = np.random.default_rng(7).integers(0, 256, (height // 2, width // 2, 3), dtype=np.uint8)
    return blocks.repeat(2, axis=0).repeat(2, axis=1)


def write_with_orientation(path, pixels: np.ndarray, pil_format: str, orientation: int, **options) -> None:
    Image.fromarray(pixels).save(path, pil_format, exif=exif_block(orientation), **options)


def pil_upright(path) -> np.ndarray:
    """The independent reference: PIL's reading of the file turned by ``ImageOps.exif_transpose``."""
    with Image.open(path) as image:
        return to_float(np.asarray(ImageOps.exif_transpose(image).convert("RGB")))


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("kind", FORMATS)
def test_reading_applies_the_exif_orientation(tmp_path, kind, orientation):
    pil_format, suffix, options = FORMATS[kind]
    pixels = asymmetric_image()
    path = tmp_path / f"x{suffix}"
    write_with_orientation(path, pixels, pil_format, orientation, **options)
    image = read_image_file(path)
    assert image.shape == ((10, 6, 3) if orientation >= 5 else (6, 10, 3))  # 5..8 stand the photo on its side
    reference = pil_upright(path)
    tolerance = 3 / 255 if kind == "jpeg" else 0  # two JPEG decoders may round differently
    assert np.abs(image - reference).max() <= tolerance + 1e-7
    # The same as turning the stored pixels with apply_orientation, and undone by undo_orientation.
    assert np.abs(image - apply_orientation(to_float(pixels), orientation)).max() <= tolerance + 1e-7
    assert np.abs(undo_orientation(image, orientation) - to_float(pixels)).max() <= tolerance + 1e-7


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P"])
def test_grey_alpha_and_palette_files_are_read_upright_as_rgb(tmp_path, mode):
    image = Image.fromarray(asymmetric_image()).convert(mode)
    image.save(tmp_path / "x.png", exif=exif_block(6))
    result = read_image_file(tmp_path / "x.png")
    assert result.shape == (10, 6, 3) and result.dtype == np.float32
    assert np.array_equal(result, pil_upright(tmp_path / "x.png"))  # alpha dropped, not blended


def test_eXIf_after_the_pixel_data_is_found(tmp_path):
    """Some writers put the eXIf chunk after IDAT; both the orientation and the metadata must find it there."""
    data = bytearray(encode_png(to_float(asymmetric_image()), bits=8))
    body = exif_block(8)[6:]
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    end = data.rindex(b"IEND") - 4
    (tmp_path / "x.png").write_bytes(bytes(data[:end]) + chunk + bytes(data[end:]))
    assert read_image_file(tmp_path / "x.png").shape == (10, 6, 3)
    exif = Image.Exif()
    exif.load(read_metadata(tmp_path / "x.png").exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "fip camera"


@pytest.mark.parametrize("orientation", [1, 6, 8])
@pytest.mark.parametrize("kind", ["png", "tiff"])
def test_16_bit_files_keep_their_precision_when_turned(tmp_path, kind, orientation):
    stored = np.random.default_rng(1).integers(0, 65536, (6, 10, 3), dtype=np.uint16)
    path = tmp_path / f"x.{kind}"
    if kind == "png":  # PIL cannot write 16-bit RGB PNG
        ok, buffer = cv2.imencodeWithMetadata(
            ".png",
            stored[..., ::-1].copy(),
            [cv2.IMAGE_METADATA_EXIF],
            [np.frombuffer(exif_block(orientation)[6:], np.uint8)],
        )
        assert ok
        path.write_bytes(buffer.tobytes())
    else:
        tifffile.imwrite(path, stored, photometric="rgb", extratags=[(0x0112, "H", 1, orientation, True)])
    image = read_image_file(path)
    assert np.array_equal(np.round(image * 65535).astype(np.uint16), apply_orientation(stored, orientation))


def test_orientation_by_hand():
    stored = np.arange(6).reshape(2, 3)  # [[0 1 2], [3 4 5]]
    assert apply_orientation(stored, 1) is stored
    assert apply_orientation(stored, 6).tolist() == [[3, 0], [4, 1], [5, 2]]  # turned clockwise
    assert apply_orientation(stored, 8).tolist() == [[2, 5], [1, 4], [0, 3]]  # turned anticlockwise
    assert apply_orientation(stored, 3).tolist() == [[5, 4, 3], [2, 1, 0]]
    assert apply_orientation(stored, 2).tolist() == [[2, 1, 0], [5, 4, 3]]
    assert apply_orientation(stored, 5).tolist() == [[0, 3], [1, 4], [2, 5]]
    assert apply_orientation(stored, 7).tolist() == [[5, 2], [4, 1], [3, 0]]
    for code in range(2, 9):  # contiguous: torch.from_numpy refuses negative strides
        assert apply_orientation(stored, code).flags.c_contiguous
        assert np.array_equal(undo_orientation(apply_orientation(stored, code), code), stored)


@pytest.mark.parametrize("code", [0, 9, -1, 6.0, "6", True, None])
def test_orientation_codes_are_checked(code):
    with pytest.raises(InputError, match="1..8"):
        apply_orientation(np.zeros((2, 2, 3)), code)


def test_metadata_of_a_file_without_any(tmp_path):
    (tmp_path / "plain.png").write_bytes(encode_png(smooth_image(8, 8), bits=8))
    assert read_metadata(tmp_path / "plain.png") == PhotoMetadata(None, None)
    Image.fromarray(asymmetric_image()).save(tmp_path / "plain.jpg")
    assert read_metadata(tmp_path / "plain.jpg") == PhotoMetadata()


@pytest.mark.parametrize("kind", FORMATS)
def test_metadata_is_read_with_orientation_reset(tmp_path, kind):
    pil_format, suffix, options = FORMATS[kind]
    profile = srgb_profile()
    block = exif_block(6, tag_36867="2024:05:01 10:00:00")  # DateTimeOriginal in the Exif IFD
    Image.fromarray(asymmetric_image()).save(
        tmp_path / f"x{suffix}", pil_format, exif=block, icc_profile=profile, **options
    )
    metadata = read_metadata(tmp_path / f"x{suffix}")
    assert metadata.icc_profile == profile
    exif = Image.Exif()
    exif.load(metadata.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "fip camera"
    assert exif.get_ifd(0x8769)[36867] == "2024:05:01 10:00:00"


def test_tiff_metadata_leaves_the_pixel_layout_behind(tmp_path):
    block = exif_block(6, tag_33434=0.01)  # ExposureTime in the Exif IFD
    Image.fromarray(asymmetric_image()).save(tmp_path / "x.tif", exif=block, icc_profile=srgb_profile())
    metadata = read_metadata(tmp_path / "x.tif")
    assert metadata.icc_profile == srgb_profile()
    exif = Image.Exif()
    exif.load(metadata.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "fip camera" and exif.get_ifd(0x8769)[33434] == 0.01
    assert not {256, 257, 258, 273, 279, 34675} & set(exif)  # size, bit depth, strips, ICC: that file's own


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bad offset"])
def test_a_damaged_exif_block_is_dropped_with_a_warning(tmp_path, caplog, damage):
    good = exif_block(6, tag_36867="2024:05:01 10:00:00")
    block = {
        "garbage": b"Exif\x00\x00not a TIFF header at all",
        "truncated": good[:30],
        "bad offset": good[:10] + b"\xff\xff\xff\x00" + good[14:],
    }[damage]
    Image.fromarray(asymmetric_image()).save(tmp_path / "x.jpg", exif=block, icc_profile=srgb_profile())
    with caplog.at_level(logging.WARNING, logger="fip.imaging"):
        metadata = read_metadata(tmp_path / "x.jpg")
    assert metadata.exif is None and metadata.icc_profile == srgb_profile()
    assert "x.jpg" in caplog.text and "EXIF" in caplog.text
    assert read_image_file(tmp_path / "x.jpg").shape == (6, 10, 3)  # the pixels are still read


def test_metadata_of_unreadable_and_missing_files(tmp_path, caplog):
    (tmp_path / "fake.png").write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING, logger="fip.imaging"):
        assert read_metadata(tmp_path / "fake.png") == PhotoMetadata()
    assert "fake.png" in caplog.text
    with pytest.raises(UnreadablePhotoError, match="no such file"):
        read_metadata(tmp_path / "missing.jpg")


def test_output_formats_and_suffixes():
    assert list(OUTPUT_FORMATS) == ["png", "png16", "tiff16", "jpeg"]
    assert [output_suffix(name) for name in OUTPUT_FORMATS] == [".png", ".png", ".tif", ".jpg"]
    assert [OUTPUT_FORMATS[name].bits for name in OUTPUT_FORMATS] == [8, 16, 16, 8]
    with pytest.raises(InputError, match="choose one of png, png16, tiff16, jpeg"):
        output_suffix("gif")


def test_png_without_metadata_is_encode_png():
    """The pair cache stores encode_png's bytes; encode_image must not make a second kind of PNG."""
    image = smooth_image(17, 23)
    assert encode_image(image, "png") == encode_png(image, bits=8)
    assert encode_image(image, "png16") == encode_png(image, bits=16)
    assert encode_image(image, "png16", metadata=PhotoMetadata()) == encode_png(image, bits=16)


@pytest.mark.parametrize("name", list(OUTPUT_FORMATS))
def test_round_trip_of_pixels_and_metadata(tmp_path, name):
    image = smooth_image(24, 32)
    profile = srgb_profile()
    metadata = PhotoMetadata(profile, exif_block(6, make="Cämera".encode(), tag_36867="2024:05:01 10:00:00"))
    data = encode_image(image, name, metadata=metadata)
    path = tmp_path / f"out{output_suffix(name)}"
    path.write_bytes(data)
    decoded = read_image_file(path)  # upright as written: the EXIF says Orientation 1
    assert decoded.shape == image.shape
    error = np.abs(decoded - image)
    if name == "jpeg":
        assert error.mean() < 1.5 / 255 and error.max() < 12 / 255
    else:
        assert error.max() <= 0.5 / (2 ** OUTPUT_FORMATS[name].bits - 1) + 1e-6
    with Image.open(path) as written:
        assert written.info.get("icc_profile") == profile
        exif = written.getexif()
        assert exif[0x0112] == 1
        assert exif[0x010F].encode("latin-1").decode() == "Cämera"  # the camera's UTF-8 bytes, as they were
        if name != "tiff16":  # tifffile cannot write the Exif IFD
            assert exif.get_ifd(0x8769)[36867] == "2024:05:01 10:00:00"
    read_back = read_metadata(path)  # fip reads its own outputs' metadata
    assert read_back.icc_profile == profile
    exif = Image.Exif()
    exif.load(read_back.exif)
    assert exif[0x0112] == 1 and exif[0x010F].encode("latin-1").decode() == "Cämera"


def test_png_metadata_chunks_are_well_formed():
    data = encode_image(smooth_image(8, 8), "png16", metadata=PhotoMetadata(srgb_profile(), exif_block(3)))
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        assert struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.append((kind, body))
        offset += 12 + length
    kinds = [kind for kind, _ in chunks]
    assert kinds.index(b"iCCP") < kinds.index(b"IDAT") and kinds.index(b"eXIf") < kinds.index(b"IDAT")
    assert dict(chunks)[b"eXIf"][:4] in (b"II*\x00", b"MM\x00*")  # the TIFF structure, without "Exif\0\0"
    assert dict(chunks)[b"IHDR"][8] == 16  # bit depth


def test_output_exif_states_the_written_size():
    block = exif_block(6, tag_40962=1000, tag_40963=800)  # PixelXDimension, PixelYDimension of the source
    data = encode_image(smooth_image(24, 32), "jpeg", metadata=PhotoMetadata(exif=block))
    with Image.open(io.BytesIO(data)) as written:
        exif_ifd = written.getexif().get_ifd(0x8769)
    assert (exif_ifd[40962], exif_ifd[40963]) == (32, 24)


def test_jpeg_quality_is_checked_and_used():
    image = smooth_image(48, 64, seed=3)
    assert len(encode_image(image, "jpeg", quality=20)) < len(encode_image(image, "jpeg", quality=95))
    for quality in (0, 101, 95.0, True):
        with pytest.raises(InputError, match="1..100"):
            encode_image(image, "jpeg", quality=quality)


def test_encode_image_rejects_bad_input():
    with pytest.raises(InputError, match="unknown output format 'bmp'"):
        encode_image(smooth_image(8, 8), "bmp")
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        encode_image(np.zeros((8, 8), np.float32), "png")


def test_a_damaged_exif_to_write_is_left_out(caplog):
    metadata = PhotoMetadata(srgb_profile(), b"Exif\x00\x00not a TIFF header")
    with caplog.at_level(logging.WARNING, logger="fip.imaging"):
        data = encode_image(smooth_image(8, 8), "jpeg", metadata=metadata)
    assert "damaged" in caplog.text
    with Image.open(io.BytesIO(data)) as written:
        assert "exif" not in written.info and written.info["icc_profile"] == srgb_profile()
