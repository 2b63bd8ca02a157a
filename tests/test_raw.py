"""DNG writing and reading through rawpy: raw data, metadata, colours and the three views."""

from __future__ import annotations

import numpy as np
import pytest
import rawpy
from conftest import smooth_image, write_synthetic_dng

from fip.data.unprocess import CaptureSettings, camera_from_srgb_matrix, unprocess
from fip.dng import encode_dng, write_dng
from fip.errors import InputError, UnreadablePhotoError
from fip.imaging import apply_orientation, encode_png, read_metadata, resize_area, srgb_encode
from fip.raw import Mosaic, load_photo, orientation_from_flip, postprocess_settings


@pytest.mark.parametrize("cfa", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_dng_round_trip_is_bit_exact(tmp_path, cfa):
    settings = CaptureSettings(cfa=cfa, black_level=512, bits=12)
    raw = unprocess(smooth_image(), settings, np.random.default_rng(0))
    write_dng(tmp_path / "x.dng", raw, settings.metadata())
    with rawpy.imread(str(tmp_path / "x.dng")) as decoded:
        assert np.array_equal(decoded.raw_image_visible, raw)
        desc = decoded.color_desc.decode()
        assert "".join(desc[i] for i in decoded.raw_pattern.reshape(-1)) == cfa
        assert list(decoded.black_level_per_channel) == [512] * 4
        assert decoded.white_level == 4095
        assert decoded.camera_whitebalance[:3] == pytest.approx([settings.red_gain, 1.0, settings.blue_gain], rel=1e-4)
        # LibRaw's camera -> sRGB matrix is the inverse of the one unprocessing used.
        expected = np.linalg.inv(camera_from_srgb_matrix(settings.xyz_to_camera))
        assert np.asarray(decoded.color_matrix)[:, :3] == pytest.approx(expected, abs=1e-4)


def test_dng_colours_round_trip_within_tolerance(tmp_path):
    """Without noise, rendering a smooth photo's DNG gives it back: 8x8 block means (which average out the
    demosaicing error) within 1.5/255 on average and 4/255 at the 99th percentile. Sharp edges are left out: the
    demosaicing error there says nothing about the colour pipeline."""
    image = smooth_image(96, 128, edge=False)
    write_synthetic_dng(tmp_path / "x.dng", image, noise=False)
    photo = load_photo(tmp_path / "x.dng")
    assert photo.is_raw and photo.size == (96, 128)

    def blocks(x):
        return x.reshape(12, 8, 16, 8, 3).mean(axis=(1, 3))

    error = np.abs(blocks(photo.srgb) - blocks(image)) * 255
    assert error.mean() < 1.5 and np.percentile(error, 99) < 4.0, (error.mean(), np.percentile(error, 99))


def test_views_are_consistent(tmp_path):
    write_synthetic_dng(tmp_path / "x.dng", smooth_image(), cfa="GBRG")
    photo = load_photo(tmp_path / "x.dng")
    assert photo.srgb.dtype == photo.linear.dtype == np.float32
    assert np.allclose(photo.srgb, srgb_encode(photo.linear), atol=1e-6)
    mosaic = photo.mosaic
    assert mosaic.cfa == "GBRG" and mosaic.shape == photo.size and mosaic.white_level == 2**14 - 1
    assert 0.0 <= mosaic.data.min() and mosaic.data.max() <= 1.0
    # The mosaic's mean colour rendered with its own white balance and matrix matches the linear view's.
    index = mosaic.channel_index()
    means = [mosaic.data[index == c].mean() * mosaic.white_balance[c] for c in range(3)]
    rendered = np.clip(np.array(means) @ mosaic.camera_to_srgb.T, 0, 1)
    assert rendered == pytest.approx(photo.linear.reshape(-1, 3).mean(axis=0), abs=0.02)


def test_resizing_keeps_the_cfa(tmp_path):
    write_synthetic_dng(tmp_path / "x.dng", np.full((64, 64, 3), (0.8, 0.4, 0.2), np.float32), noise=False)
    full = load_photo(tmp_path / "x.dng")
    small = load_photo(tmp_path / "x.dng", lambda h, w: (16, 24))
    assert small.size == (16, 24) and small.mosaic.shape == (16, 24)
    for dy in (0, 1):
        for dx in (0, 1):
            plane = small.mosaic.data[dy::2, dx::2]
            assert plane == pytest.approx(np.full_like(plane, full.mosaic.data[dy, dx]), abs=1e-3)
    # The half-size rendering used for downscaling agrees with the full rendering, downscaled.
    assert np.abs(small.srgb.mean(axis=(0, 1)) - full.srgb.mean(axis=(0, 1))).max() < 2 / 255


def test_plain_images_get_derived_views(tmp_path):
    image = smooth_image(31, 45)  # odd sizes are cropped to even
    (tmp_path / "x.png").write_bytes(encode_png(image))
    photo = load_photo(tmp_path / "x.png")
    assert not photo.is_raw and photo.size == (30, 44) and photo.native_size == (31, 45)
    assert np.abs(photo.srgb - image[:30, :44]).max() < 1 / 65535 + 1e-6
    assert photo.mosaic.cfa == "RGGB" and np.array_equal(photo.mosaic.white_balance, np.ones(3, np.float32))
    assert np.allclose(photo.mosaic.data[0::2, 0::2], photo.linear[0::2, 0::2, 0])


def test_area_resize_stays_in_the_input_range():
    # OpenCV's float32 area weights overshot an all-ones image to 1.0000002; operators refuse input above 1.
    ones = np.ones((101, 203, 3), np.float32)
    resized = resize_area(ones, 37, 71)
    assert resized.shape == (37, 71, 3) and resized.min() == resized.max() == 1.0
    image = np.random.default_rng(0).uniform(0.2, 0.7, (64, 96, 3)).astype(np.float32)
    small = resize_area(image, 21, 31)
    assert 0.2 <= small.min() and small.max() <= 0.7 and abs(small.mean() - image.mean()) < 1e-3


def test_mosaic_rejects_odd_sizes_and_unknown_patterns():
    with pytest.raises(ValueError, match="even"):
        Mosaic(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="RGGB"):
        Mosaic(np.zeros((4, 4), np.float32), cfa="RGBW")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("fake.dng", b"this is not a raw file", "LibRaw cannot read"),
        ("fake.png", b"\x89PNG but not really", "not an image file"),
        ("empty.jpg", b"", "not an image file"),
        ("notes.txt", b"hello", "unsupported file type '.txt'"),
    ],
)
def test_unreadable_files_name_the_problem(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UnreadablePhotoError, match=message) as info:
        load_photo(tmp_path / name)
    assert name in str(info.value)


def test_truncated_dng_is_reported(tmp_path):
    write_synthetic_dng(tmp_path / "full.dng", smooth_image(64, 64))
    data = (tmp_path / "full.dng").read_bytes()
    (tmp_path / "cut.dng").write_bytes(data[: len(data) // 3])
    with pytest.raises(UnreadablePhotoError, match="cut.dng"):
        load_photo(tmp_path / "cut.dng")


def test_exposure_scales_light_and_clips_like_a_sensor(tmp_path):
    write_synthetic_dng(tmp_path / "x.dng", smooth_image(), seed=4)
    photo = load_photo(tmp_path / "x.dng")
    assert photo.exposed(0) is photo
    darker, brighter = photo.exposed(-1), photo.exposed(2)
    assert np.allclose(darker.linear, photo.linear * 0.5, atol=1e-7)
    assert np.allclose(darker.mosaic.data, photo.mosaic.data * 0.5, atol=1e-7)
    assert np.allclose(darker.srgb, srgb_encode(darker.linear), atol=1e-6)
    assert brighter.linear.max() == 1.0 and brighter.mosaic.data.max() == 1.0  # clipped at the white level
    assert np.allclose(brighter.linear, np.minimum(photo.linear * 4, 1), atol=1e-6)
    assert darker.mosaic.cfa == photo.mosaic.cfa and darker.size == photo.size


@pytest.mark.parametrize("orientation", range(1, 9))
def test_raw_orientation_turns_the_views_as_libraw_does(tmp_path, orientation):
    """The views stay in sensor order; ``Photo.orientation`` turns them exactly as LibRaw's own rotation does."""
    settings = CaptureSettings(cfa="GRBG")
    raw = unprocess(smooth_image(32, 48, seed=2), settings, None)
    write_dng(tmp_path / "turned.dng", raw, settings.metadata(), orientation=orientation)
    photo = load_photo(tmp_path / "turned.dng")
    assert photo.orientation == orientation and photo.size == (32, 48) and photo.mosaic.cfa == "GRBG"
    write_dng(tmp_path / "as-stored.dng", raw, settings.metadata())
    stored = load_photo(tmp_path / "as-stored.dng")
    assert stored.orientation == 1
    assert np.array_equal(photo.mosaic.data, stored.mosaic.data) and np.array_equal(photo.linear, stored.linear)
    with rawpy.imread(str(tmp_path / "turned.dng")) as decoded:  # LibRaw applying the file's flip itself
        settings_from_file = {k: v for k, v in postprocess_settings().items() if k != "user_flip"}
        turned_by_libraw = decoded.postprocess(**settings_from_file).astype(np.float32) / 65535.0
    upright = apply_orientation(photo.linear, orientation)
    assert upright.shape == ((48, 32, 3) if orientation >= 5 else (32, 48, 3))
    assert np.array_equal(upright, turned_by_libraw)


def test_dng_exif_is_read_upright(tmp_path):
    from PIL import Image

    settings = CaptureSettings()
    write_dng(tmp_path / "x.dng", unprocess(smooth_image(), settings, None), settings.metadata(), orientation=6)
    exif = Image.Exif()
    exif.load(read_metadata(tmp_path / "x.dng").exif)
    assert (exif[0x010F], exif[0x0110], exif[0x0112]) == ("fip", "synthetic", 1)
    assert 50706 not in exif and 33422 not in exif  # DNGVersion, CFAPattern: the raw file's own layout


def test_orientation_survives_resizing_and_exposure(tmp_path):
    settings = CaptureSettings()
    write_dng(tmp_path / "x.dng", unprocess(smooth_image(), settings, None), settings.metadata(), orientation=8)
    photo = load_photo(tmp_path / "x.dng", lambda h, w: (24, 32))
    assert photo.orientation == 8
    assert photo.resized(12, 16).orientation == 8 and photo.exposed(-1).orientation == 8


def test_image_files_load_upright(tmp_path):
    from PIL import Image

    pixels = np.round(smooth_image(30, 40) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # a portrait photo stored in landscape
    Image.fromarray(pixels).save(tmp_path / "portrait.png", exif=exif)
    photo = load_photo(tmp_path / "portrait.png")
    assert photo.orientation == 1 and photo.size == (40, 30)
    assert np.array_equal(photo.srgb, apply_orientation(pixels, 6).astype(np.float32) / 255)


def test_flip_codes_and_dng_orientation_are_checked(caplog):
    assert [orientation_from_flip(flip) for flip in range(8)] == [1, 2, 4, 3, 5, 8, 6, 7]
    assert orientation_from_flip(11) == 1 and "unknown image flip 11" in caplog.text
    settings = CaptureSettings()
    raw = unprocess(smooth_image(), settings, None)
    with pytest.raises(InputError, match="1..8"):
        encode_dng(raw, settings.metadata(), orientation=9)
