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
