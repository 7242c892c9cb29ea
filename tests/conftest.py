import os
from pathlib import Path

import pytest
import torch

# Two cores on CI: keep torch from oversubscribing them (and runs comparable).
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture
def real_data():
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} is absent (it lives in shared/ beside the repo)")
    return REAL_DATA


def wave_image(shape=(48, 48), seed=0):
    """A small test image with structure at a few px plus noise (float32)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = np.sin(xx / 2.0) * np.cos(yy / 3.0) + 0.3 * rng.standard_normal(shape)
    return img.astype(np.float32)


@pytest.fixture(scope="module")
def npy(tmp_path_factory):
    """``wave_image()`` saved as a .npy file."""
    import numpy as np

    path = tmp_path_factory.mktemp("input") / "image.npy"
    np.save(path, wave_image())
    return path
