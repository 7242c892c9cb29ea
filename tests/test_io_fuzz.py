"""Fuzz the readers with truncated and bit-flipped copies of real and written files.

The only acceptable outcomes are a valid ImageStack or a ScaleVAEError: any other exception,
a hang or a runaway allocation is a reader bug. Variants are deterministic (fixed seeds), and
flips are concentrated in the headers and trailing metadata, where formats keep their sizes
and offsets. The default run is small; ``-m slow`` runs many more variants.
"""

import json
import zlib
from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from scalevae.errors import ScaleVAEError
from scalevae.io import ImageStack, read_image

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

# file -> channel to ask for
REAL_FILES = {"PTO_Funakubo0004.h5": "AmplitudeRetrace", "scan_0001.ibw": "Amplitude1Retrace",
              "P0089OP0027.ibw": "HeightRetrace", "SI-HAADF.dm3": None}
FAST, SLOW = 30, 300


def variant(raw, name, i):
    """The i-th damaged copy of `raw`: every third a truncation, the others 1-40 bit flips."""
    rng = np.random.default_rng([zlib.crc32(name.encode()), i])
    n = len(raw)
    if i % 3 == 0:
        cut = int(rng.integers(0, 4096) if rng.random() < 0.5 else rng.integers(0, n))
        return raw[:cut]
    b = bytearray(raw)
    for _ in range(int(rng.integers(1, 41))):
        r = rng.random()
        if r < 0.4:  # header
            pos = rng.integers(0, min(n, 4096))
        elif r < 0.7:  # trailing metadata (ibw labels and note, dm3 tags...)
            pos = rng.integers(max(0, n - 40000), n)
        else:
            pos = rng.integers(0, n)
        b[int(pos)] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def check_read(path, channel):
    try:
        s = read_image(path, channel)
    except ScaleVAEError as exc:
        assert str(exc)
        return
    assert isinstance(s, ImageStack)
    assert s.data.dtype == np.float32 and s.data.ndim == 3
    assert min(s.data.shape[1:]) >= 8 and np.isfinite(s.data).all()
    flat = s.data.reshape(len(s.data), -1)
    assert (flat.max(axis=1) > flat.min(axis=1)).all()
    assert s.pixel_size is None or (np.isfinite(s.pixel_size) and s.pixel_size > 0)
    assert (s.pixel_size is None) == (s.unit is None)
    json.dumps(s.metadata)


@lru_cache(maxsize=None)
def real_bytes(name):
    return (REAL / name).read_bytes()


def real_cases(count):
    return [pytest.param(name, i, id=f"{name}-{i}") for name in REAL_FILES for i in range(count)]


def _fuzz_real(tmp_path, name, i):
    if not REAL.is_dir():
        pytest.skip(f"real data folder {REAL} is absent")
    path = tmp_path / name
    path.write_bytes(variant(real_bytes(name), name, i))
    check_read(path, REAL_FILES[name])


@pytest.mark.parametrize("name, i", real_cases(FAST))
def test_fuzz_real_files(tmp_path, name, i):
    _fuzz_real(tmp_path, name, i)


@pytest.mark.slow
@pytest.mark.parametrize("name, i", [c for c in real_cases(SLOW)
                                     if c.values[1] >= FAST])
def test_fuzz_real_files_slow(tmp_path, name, i):
    _fuzz_real(tmp_path, name, i)


# files written here: cover the formats the real folder lacks
def _written(kind, path):
    a = np.random.default_rng(0).random((3, 24, 24)).astype(np.float32)
    if kind == "tif":
        tifffile.imwrite(path, a, photometric="minisblack", imagej=True,
                         resolution=(2.0, 2.0), metadata={"unit": "nm", "axes": "ZYX"})
    elif kind == "npy":
        np.save(path, a)
    elif kind == "npz":
        np.savez(path, height=a, phase=a[::-1], pixel_size=1.5, unit="nm")
    elif kind == "png":
        Image.fromarray((a.transpose(1, 2, 0) * 255).astype(np.uint8)).save(path)
    elif kind == "h5":
        with h5py.File(path, "w") as f:
            f["images"] = a


WRITTEN = {"tif": None, "npy": None, "npz": "height", "png": None, "h5": None}


@pytest.fixture(scope="module")
def written_bytes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_sources")
    out = {}
    for kind in WRITTEN:
        path = folder / f"source.{kind}"
        _written(kind, path)
        out[kind] = path.read_bytes()
    return out


@pytest.mark.parametrize("kind", WRITTEN)
def test_fuzz_written_files(tmp_path, written_bytes, kind):
    for i in range(FAST):
        path = tmp_path / f"v{i}.{kind}"
        path.write_bytes(variant(written_bytes[kind], kind, i))
        check_read(path, WRITTEN[kind])
