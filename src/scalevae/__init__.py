"""scalevae: the scale-invariant VAE (SI-VAE) for microscopy images.

>>> import scalevae
>>> ds = scalevae.run("image.tif", windows="8:64:4", keypoints="grid:4", out="runs/x")  # doctest: +SKIP
>>> new = scalevae.load_run("runs/x").encode("other.tif")  # doctest: +SKIP

The public functions are imported on first use, so that ``import scalevae`` stays light (no
torch) for code that only reads files or results; ``dir(scalevae)`` lists them.

>>> {"run", "apply", "load_run", "Run", "load_result"} <= set(dir(scalevae))
True
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

# Training runs on every core by default, in ops far smaller than a scheduler tick. OpenMP's
# default has an idle thread spin at every op's barrier: on a machine whose cores are busy with
# other work it then waits for a thread that is not running, and one epoch took 4-8x longer on
# two threads than on one (benchmarks/RESULTS_pto.md). Threads that sleep at the barrier keep
# two threads faster than one under load as well. Read once, when torch loads its OpenMP
# runtime: a process that imported torch first keeps its own setting (as does a user's).
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .errors import ScaleVAEError  # noqa: E402

# public name -> the module that defines it
_LAZY = {"run": "api", "load_result": "results", "load_model": "results",
         "load_run": "reuse", "apply": "reuse", "Run": "reuse"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'scalevae' has no attribute {name!r}")


def __dir__():
    return sorted({n for n in globals() if not n.startswith("_")} | set(_LAZY) | {"__version__"})


__all__ = ["ScaleVAEError", "run", "load_result", "load_model", "load_run", "apply", "Run",
           "__version__"]
