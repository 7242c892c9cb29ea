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
