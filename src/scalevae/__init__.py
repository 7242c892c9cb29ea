"""scalevae: the scale-invariant VAE (SI-VAE) for microscopy images.

>>> import scalevae
>>> ds = scalevae.run("image.tif", windows="8:64:4", keypoints="grid:4", out="runs/x")  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .errors import ScaleVAEError  # noqa: E402
from .api import run  # noqa: E402
from .results import load_model, load_result  # noqa: E402

__all__ = ["ScaleVAEError", "run", "load_result", "load_model", "__version__"]
