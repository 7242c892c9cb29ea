"""The two-scale check's recommendation in detail: recommended window, the window where the
true void count separates the regions half-way, conclusive / gradual, every rise.

Same runs as ``run_validation.py --only twoscale`` (same seeds, same settings: identical
scores), one line per seed::

    OMP_NUM_THREADS=1 PYTHONPATH=src python validation/twoscale_details.py 0 1 2
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root makes `validation` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.scoring import rises_text, validate_twoscale  # noqa: E402


def main(seeds):
    for seed in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores, d = validate_twoscale(seed)
        ls = d["scales"]
        rises = rises_text(ls)
        print(f"seed {seed}: recommended {d['recommended']} px ({ls.attrs['state']} state; W = "
              f"{d['critical']} px, {scores['twoscale_window_error']:.0f} steps), void count "
              f"separates at {d['separation']} px, conclusive {bool(ls.conclusive)}, gradual "
              f"{bool(ls.gradual)}; rises {rises}", flush=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0, 1, 2, 3, 4, 5])
