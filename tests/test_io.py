"""Tests for scalevae.io: every reader on real files and on files written here, and every
kind of bad input a user can give, with the message fragment that tells them what to do."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage.color import rgb2gray

from scalevae.errors import ScaleVAEError
from scalevae.io import (ImageStack, as_stack, list_channels, normalize_unit,
                         physical_to_pixels, read_image)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data folder {REAL} is absent")

NSID_CHANNELS = ["HeightRetrace", "AmplitudeRetrace", "DeflectionRetrace", "PhaseRetrace"]


def rng_image(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def assert_valid(stack):
    assert isinstance(stack, ImageStack)
    assert stack.data.dtype == np.float32 and stack.data.ndim == 3
    assert np.isfinite(stack.data).all()
    json.dumps(stack.metadata)


# ----------------------------------------------------------------------------- real files

@needs_real
def test_nsid_amplitude_known_pixel_size_and_orientation():
    path = REAL / "PTO_Funakubo0004.h5"
    s = read_image(path, channel="AmplitudeRetrace")
    assert_valid(s)
    assert s.data.shape == (1, 256, 256)
    # 3 um scan over 256 points, converted from metres to nm
    assert s.unit == "nm" and s.pixel_size == pytest.approx(3000 / 256)
    assert s.channel == "AmplitudeRetrace" and list(s.channels) == NSID_CHANNELS
    assert s.source == str(path) and s.metadata["data_unit"] == "m"
    with h5py.File(path, "r") as f:
        raw = f["Measurement_000/Channel_1/Channel_1/Channel_1"][()]
    # stored as (x, y) per DIMENSION_LABELS; read as (y, x)
    np.testing.assert_array_equal(s.data[0], raw.T)


@needs_real
def test_nsid_channel_is_case_insensitive_and_listed():
    path = REAL / "PTO_Funakubo0004.h5"
    assert list_channels(path) == NSID_CHANNELS
    a = read_image(path, "amplituderetrace")
    b = read_image(path, "AmplitudeRetrace")
    np.testing.assert_array_equal(a.data, b.data)
    assert read_image(path, "PhaseRetrace").metadata["data_unit"] == "deg"


@needs_real
@pytest.mark.parametrize("channel, fragment", [
    (None, "has 4 channels: HeightRetrace, AmplitudeRetrace"),
    ("Amplitude", "not found"),
])
def test_nsid_channel_errors_list_the_channels(channel, fragment):
    with pytest.raises(ScaleVAEError, match=fragment) as err:
        read_image(REAL / "PTO_Funakubo0004.h5", channel)
    assert "PhaseRetrace" in str(err.value)


@needs_real
def test_ibw_scan_0001_labels_and_pixel_size():
    from igor2 import binarywave

    path = REAL / "scan_0001.ibw"
    # igor2 alone gives 'Phase1Retracece'; the labels are cut at their NUL here
    assert list_channels(path) == ["HeightRetrace", "Amplitude1Retrace", "Amplitude2Retrace",
                                   "Phase1Retrace", "Phase2Retrace", "FrequencyRetrace"]
    s = read_image(path, "amplitude1retrace")
    assert_valid(s)
    assert s.channel == "Amplitude1Retrace" and s.data.shape == (1, 256, 256)
    assert s.unit == "nm" and s.pixel_size == pytest.approx(5000 / 256)
    wave = binarywave.load(str(path))["wave"]["wData"]
    np.testing.assert_array_equal(s.data[0], wave[:, :, 1].T)


@needs_real
def test_ibw_p0089():
    path = REAL / "P0089OP0027.ibw"
    assert list_channels(path) == ["HeightRetrace", "AmplitudeRetrace", "DeflectionRetrace",
                                   "PhaseRetrace", "UserIn0Retrace"]
    s = read_image(path, "AmplitudeRetrace")
    assert_valid(s)
    assert s.unit == "nm" and s.pixel_size == pytest.approx(2000 / 256)
    with pytest.raises(ScaleVAEError, match="Amplitude1Retrace.*not found.*AmplitudeRetrace"):
        read_image(path, "Amplitude1Retrace")


@needs_real
def test_dm3_haadf():
    from rsciio.digitalmicrograph import file_reader

    path = REAL / "SI-HAADF.dm3"
    s = read_image(path)
    assert_valid(s)
    assert s.data.shape == (1, 1568, 192)
    # the file has a scale but no unit: no physical calibration is claimed
    assert s.pixel_size is None and s.unit is None and "uncalibrated" in s.metadata
    assert list_channels(path) == []
    np.testing.assert_array_equal(s.data[0], file_reader(str(path))[0]["data"])


# ----------------------------------------------------------------------------- round trips

def test_tiff_single_page_with_imagej_calibration(tmp_path):
    a = (rng_image((40, 50)) * 4000).astype(np.uint16)
    p = tmp_path / "one.tif"
    tifffile.imwrite(p, a, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "\\u00B5m"})
    s = read_image(p)
    assert_valid(s)
    np.testing.assert_array_equal(s.data[0], a.astype(np.float32))
    assert s.pixel_size == pytest.approx(0.5) and s.unit == "um"


def test_tiff_stack_and_cm_resolution(tmp_path):
    a = rng_image((4, 32, 40))
    p = tmp_path / "stack.tiff"
    # 2 nm pixels = 5e6 pixels per cm
    tifffile.imwrite(p, a, photometric="minisblack", resolution=(5e6, 5e6),
                     resolutionunit="CENTIMETER")
    s = read_image(p)
    np.testing.assert_array_equal(s.data, a)
    assert s.pixel_size == pytest.approx(2.0) and s.unit == "nm"


def test_tiff_dpi_is_not_a_calibration(tmp_path):
    p = tmp_path / "dpi.tif"
    tifffile.imwrite(p, rng_image((16, 16)), resolution=(72, 72))
    assert read_image(p).pixel_size is None


def test_tiff_rgb_and_channels(tmp_path):
    rgb = (rng_image((24, 30, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    s = read_image(tmp_path / "rgb.tif")
    np.testing.assert_allclose(s.data[0], rgb2gray(rgb), rtol=1e-6)
    assert "RGB" in s.metadata["converted"]
    c = rng_image((3, 2, 16, 20))  # (z, channel, y, x)
    tifffile.imwrite(tmp_path / "hyper.tif", c, imagej=True, metadata={"axes": "ZCYX"})
    assert list_channels(tmp_path / "hyper.tif") == ["0", "1"]
    np.testing.assert_array_equal(read_image(tmp_path / "hyper.tif", "1").data, c[:, 1])


def test_npy_int_and_bool_become_float32(tmp_path):
    a = np.arange(16 * 12).reshape(16, 12).astype(np.int64)
    np.save(tmp_path / "a.npy", a)
    s = read_image(tmp_path / "a.npy")
    assert s.data.dtype == np.float32 and s.data.shape == (1, 16, 12)
    np.testing.assert_array_equal(s.data[0], a)
    assert s.pixel_size is None and s.channels == ()
    b = as_stack(np.indices((10, 10)).sum(0) % 2 == 0)
    assert b.data.dtype == np.float32 and set(np.unique(b.data)) == {0.0, 1.0}


def test_npz_channels_and_calibration(tmp_path):
    a, b = rng_image((16, 16), 1), rng_image((2, 16, 16), 2)
    np.savez(tmp_path / "one.npz", image=a, pixel_size=0.25, unit="nm")
    s = read_image(tmp_path / "one.npz")
    np.testing.assert_array_equal(s.data[0], a)
    assert (s.pixel_size, s.unit, s.channel) == (0.25, "nm", "image")
    np.savez(tmp_path / "two.npz", height=a, phase=b, control=[1.0, 2.0], control_name="T")
    assert list_channels(tmp_path / "two.npz") == ["height", "phase"]
    with pytest.raises(ScaleVAEError, match="2 arrays: height, phase"):
        read_image(tmp_path / "two.npz")
    s = read_image(tmp_path / "two.npz", "Phase")
    np.testing.assert_array_equal(s.data, b)
    np.testing.assert_array_equal(s.control, [1.0, 2.0])
    assert s.control_name == "T"


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_png_colour_becomes_luminance(tmp_path, mode):
    px = (rng_image((20, 24, len(mode))) * 255).astype(np.uint8)
    Image.fromarray(px, mode).save(tmp_path / "c.png")
    s = read_image(tmp_path / "c.png")
    np.testing.assert_allclose(s.data[0], rgb2gray(px[..., :3]), rtol=1e-6)
    assert s.metadata["converted"].startswith(mode)


def test_png_16bit_gray_and_jpeg(tmp_path):
    a = (rng_image((20, 24)) * 60000).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png").data[0], a)
    g = (rng_image((32, 32)) * 255).astype(np.uint8)
    Image.fromarray(g).save(tmp_path / "g.jpg", quality=95)
    s = read_image(tmp_path / "g.jpg")
    assert s.data.shape == (1, 32, 32) and np.abs(s.data[0] - g).mean() < 10


def test_generic_hdf5_single_dataset(tmp_path):
    a = rng_image((3, 16, 20))
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["group/images"] = a
        f["notes"] = np.arange(5)  # 1-D: not an image
    s = read_image(tmp_path / "g.h5")
    np.testing.assert_array_equal(s.data, a)
    assert s.channel == "group/images" and s.pixel_size is None


def test_nsid_like_file_uses_dimension_scales(tmp_path):
    """Without instrument metadata, the pixel size is the step of the x dimension scale."""
    a = rng_image((20, 16))  # stored (x, y)
    with h5py.File(tmp_path / "n.h5", "w") as f:
        d = f.create_dataset("Measurement_000/Channel_0/Channel_0/Channel_0", data=a)
        d.attrs["quantity"], d.attrs["DIMENSION_LABELS"] = "Height", ["x", "y"]
        for i, (name, n) in enumerate((("x", 20), ("y", 16))):
            sc = d.parent.create_dataset(name, data=np.arange(n) * 5e-9)
            sc.make_scale(name)
            sc.attrs["units"] = "m"
            d.dims[i].attach_scale(sc)
    s = read_image(tmp_path / "n.h5", "height")
    np.testing.assert_array_equal(s.data[0], a.T)
    assert s.data.shape == (1, 16, 20) and (s.pixel_size, s.unit) == (pytest.approx(5.0), "nm")


# ----------------------------------------------------------------------------- bad arrays

BAD_ARRAYS = {
    "1-D": (np.arange(64.0), "got 1-D shape"),
    "4-D": (np.ones((2, 3, 16, 16)), r"4-D shape \(2, 3, 16, 16\)"),
    "4-D squeezable": (np.ones((1, 2, 16, 16)), "np.squeeze"),
    "complex": (np.ones((16, 16)) * 1j, "np.abs"),
    "strings": (np.full((16, 16), "a"), "non-numeric"),
    "RGB array": (np.ones((32, 32, 3)), "RGB"),
    "too small": (rng_image((4, 100)), "4 x 100 pixels, too small"),
    "no frames": (np.ones((0, 16, 16)), "no frames"),
    "constant": (np.stack([rng_image((16, 16)), np.full((16, 16), 3.0)]),
                 r"frame 1 is constant \(every pixel = 3\)"),
    "float32 overflow": (np.full((16, 16), 1e300) * rng_image((16, 16)), "float32 range"),
}


@pytest.mark.parametrize("name", BAD_ARRAYS)
def test_bad_arrays(name):
    array, fragment = BAD_ARRAYS[name]
    with pytest.raises(ScaleVAEError, match=fragment):
        as_stack(array)


def test_nan_and_inf_are_counted_and_located():
    a = rng_image((3, 16, 16))
    a[1, 2, 5] = np.nan
    a[1, 7, 7] = np.inf
    a[2, 0, 0] = np.nan
    with pytest.raises(ScaleVAEError) as err:
        as_stack(a)
    msg = str(err.value)
    assert "3 non-finite values (2 NaN, 1 inf)" in msg
    assert "frame(s) 1, 2" in msg and "first at frame 1, y=2, x=5" in msg
    assert "nan_to_num" in msg


@pytest.mark.parametrize("kwargs, fragment", [
    ({"control": [1.0, 2.0]}, "2 control values for 3 frames"),
    ({"control": [1.0, np.nan, 2.0]}, "finite"),
    ({"pixel_size": -1.0, "unit": "nm"}, "positive"),
    ({"pixel_size": 1.0}, "without a unit"),
    ({"unit": "nm"}, "without pixel_size"),
])
def test_bad_calibration_and_control(kwargs, fragment):
    with pytest.raises(ScaleVAEError, match=fragment):
        as_stack(rng_image((3, 16, 16)), **kwargs)


def test_as_stack_good_input_and_restack():
    a = rng_image((2, 16, 16)).astype(np.float64)
    s = as_stack(a, pixel_size=0.2, unit="µm", control=[10, 20], control_name="time")
    assert s.data.shape == (2, 16, 16) and s.unit == "um" and s.source == "array"
    s.data[0, 0, 0] = -5  # a copy: the caller's array is untouched
    assert a[0, 0, 0] != -5
    again = as_stack(s, pixel_size=0.5)
    assert (again.pixel_size, again.unit, again.control_name) == (0.5, "um", "time")


# ----------------------------------------------------------------------------- bad files

def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ScaleVAEError, match="file not found: .*nothere.tif"):
        read_image(tmp_path / "nothere.tif")


def test_unknown_extension_lists_supported(tmp_path):
    (tmp_path / "data.xyz").write_bytes(b"123")
    with pytest.raises(ScaleVAEError, match=r"unknown file type '\.xyz'.*\.ibw.*\.tif"):
        read_image(tmp_path / "data.xyz")
    with pytest.raises(ScaleVAEError, match="is a folder"):
        read_image(tmp_path)


def _write_good(kind, path):
    a = rng_image((32, 32))
    if kind == "tif":
        tifffile.imwrite(path, a)
    elif kind == "npy":
        np.save(path, a)
    elif kind == "npz":
        np.savez(path, a=a)
    elif kind == "png":
        Image.fromarray((a * 255).astype(np.uint8)).save(path)
    elif kind == "h5":
        with h5py.File(path, "w") as f:
            f["a"] = a


@pytest.mark.parametrize("kind, fmt", [("tif", "TIFF"), ("npy", "NumPy"),
                                       ("npz", "NumPy archive"), ("png", "PNG"),
                                       ("h5", "HDF5")])
def test_truncated_written_files(tmp_path, kind, fmt):
    good = tmp_path / f"good.{kind}"
    _write_good(kind, good)
    bad = tmp_path / f"bad.{kind}"
    bad.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    with pytest.raises(ScaleVAEError, match=f"could not read .*bad.{kind} as {fmt}: .*"
                                            "truncated or corrupt"):
        read_image(bad)


@needs_real
@pytest.mark.parametrize("name, fmt", [("PTO_Funakubo0004.h5", "HDF5"),
                                       ("scan_0001.ibw", "Igor binary wave"),
                                       ("SI-HAADF.dm3", "DigitalMicrograph")])
def test_truncated_real_files(tmp_path, name, fmt):
    bad = tmp_path / name
    bad.write_bytes((REAL / name).read_bytes()[:5000])
    with pytest.raises(ScaleVAEError, match=f"as {fmt}: .*truncated or corrupt"):
        read_image(bad, "HeightRetrace" if fmt != "DigitalMicrograph" else None)


def test_pickled_npy_and_channel_on_single_image(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ScaleVAEError, match="Python objects"):
        read_image(tmp_path / "obj.npy")
    np.save(tmp_path / "a.npy", rng_image((16, 16)))
    with pytest.raises(ScaleVAEError, match="no channels"):
        read_image(tmp_path / "a.npy", channel="Height")


def test_validation_errors_name_the_file(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((16, 16)))
    with pytest.raises(ScaleVAEError, match="flat.npy: frame 0 is constant"):
        read_image(tmp_path / "flat.npy")


# ----------------------------------------------------------------------------- units

@pytest.mark.parametrize("value, unit, size, size_unit, expected", [
    (20, "nm", 2.0, "nm", 10.0),
    (0.1, "um", 12.5, "nm", 8.0),
    (0.1, "µm", 12.5, "nm", 8.0),
    (5, "Å", 0.25, "nm", 2.0),
    (1, "nm", 0.5, "A", 20.0),
    (12, "px", None, None, 12.0),
    (3, "1/nm", 0.5, "1/nm", 6.0),
])
def test_physical_to_pixels(value, unit, size, size_unit, expected):
    assert physical_to_pixels(value, unit, size, size_unit) == pytest.approx(expected)


@pytest.mark.parametrize("unit, size, size_unit, fragment", [
    ("nm", None, None, "pixel size is unknown"),
    ("nm", 1.0, "deg", "units must be the same or both lengths"),
    ("parsec", 1.0, "nm", "units must be the same or both lengths"),
])
def test_physical_to_pixels_errors(unit, size, size_unit, fragment):
    with pytest.raises(ScaleVAEError, match=fragment):
        physical_to_pixels(10, unit, size, size_unit)


def test_physical_pixel_only_for_a_real_length():
    from scalevae.io.units import physical_pixel

    assert physical_pixel(11.7, "nm") == (11.7, "nm")
    for size, unit in [(1.0, "px"), (2.0, "pixels"), (float("nan"), "nm"), (0, "nm"),
                       (-1, "nm"), (None, "nm"), (3.0, ""), (3.0, None), ("x", "nm")]:
        assert physical_pixel(size, unit) == (None, None)


def test_normalize_unit():
    assert [normalize_unit(u) for u in ["µm", "μm", "micron", "Å", "nm", "NM", "m", "",
                                        None, "1/nm"]] == \
        ["um", "um", "um", "A", "nm", "nm", "m", None, None, "1/nm"]


# ----------------------------------------------------------------------------- scan-size metadata

def _h5_with(tmp_path, name, where, attrs, dataset_extra=None):
    """A 2-D dataset 'img' (32 x 64: ny x nx) with `attrs` on the dataset, its group or the root."""
    path = tmp_path / name
    with h5py.File(path, "w") as f:
        g = f.create_group("Measurement_000")
        d = g.create_dataset("img", data=np.random.default_rng(0).random((32, 64)))
        target = {"dataset": d, "group": g, "root": f}[where]
        for k, v in attrs.items():
            target.attrs[k] = v
        for k, v in (dataset_extra or {}).items():
            g.create_dataset(k, data=v)
    return path


@pytest.mark.parametrize("where", ["dataset", "group", "root"])
def test_h5_asylum_scan_size_attributes(tmp_path, where):
    # Asylum-style keys in metres with points and lines matching the image
    p = _h5_with(tmp_path, "a.h5", where, {"FastScanSize": 1.28e-6, "SlowScanSize": 0.64e-6,
                                           "ScanPoints": 64, "ScanLines": 32})
    s = read_image(p)
    assert s.pixel_size == pytest.approx(20.0) and s.unit == "nm"
    assert "ScanSize" in s.metadata["pixel_size_source"]


def test_h5_scan_size_array_attribute_in_metres(tmp_path):
    p = _h5_with(tmp_path, "b.h5", "dataset", {"scan_size": np.array([6.4e-9, 3.2e-9])})
    s = read_image(p)
    assert s.pixel_size == pytest.approx(1.0) and s.unit == "A" or \
        (s.pixel_size == pytest.approx(100.0) and s.unit == "pm")


def test_h5_scan_size_dataset_with_unit(tmp_path):
    p = _h5_with(tmp_path, "c.h5", "group", {"scan_size_unit": "um"},
                 dataset_extra={"ScanSize": np.array([3.2, 1.6])})
    s = read_image(p)
    assert s.pixel_size == pytest.approx(0.05) and s.unit == "um"


def test_h5_x_dimension_scale(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("img", data=np.random.default_rng(0).random((32, 64)))
        x = f.create_dataset("x", data=np.arange(64) * 0.5)
        x.attrs["units"] = "nm"
        x.make_scale("x")
        d.dims[1].attach_scale(x)
    s = read_image(path)
    assert s.pixel_size == pytest.approx(0.5) and s.unit == "nm"


def test_h5_without_scan_size_has_no_pixel_size(tmp_path):
    s = read_image(_h5_with(tmp_path, "e.h5", "dataset", {"ScanPoints": 64}))
    assert s.pixel_size is None


def test_dm3_channel_listing_keeps_the_unitless_scale():
    from scalevae.io.channels import describe_channels, format_channels

    path = REAL / "SI-HAADF.dm3"
    if not path.exists():
        pytest.skip("real data not available")
    (ch,) = describe_channels(path)
    assert ch["name"] == "06-HAADF" and ch["shape"] == (1, 1568, 192)
    assert ch["pixel_size"] is None and "0.03125" in ch["note"]
    with pytest.warns(UserWarning, match="0.03125 per px but no unit"):
        read_image(path)
    line = format_channels([ch])
    assert "1 x 1568 x 192" in line and "without a unit" in line


def test_channels_lines_for_real_h5():
    from scalevae.io.channels import describe_channels

    path = REAL / "PTO_Funakubo0004.h5"
    if not path.exists():
        pytest.skip("real data not available")
    chans = describe_channels(path)
    assert [c["name"] for c in chans] == NSID_CHANNELS
    assert all(c["unit"] == "nm" and c["pixel_size"] > 0 for c in chans)
