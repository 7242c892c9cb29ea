"""scalevae: the scale-invariant VAE (SI-VAE) for microscopy images."""

__version__ = "0.1.0"

from .errors import ScaleVAEError  # noqa: E402

__all__ = ["ScaleVAEError", "__version__"]
