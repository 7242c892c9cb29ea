"""napari reader for scalevae run folders (``pip install scalevae[napari]``).

Opening a run folder (``--out`` of ``scalevae run`` or ``scalevae apply``) in napari gives the
input image, the keypoints with their latents per window as point features, and one latent map
per latent variable with the window as a slider axis. :func:`run_layers` builds the same layers
without napari (plain ``(data, kwargs, layer_type)`` tuples).
"""

from ._reader import get_reader, run_layers

__all__ = ["get_reader", "run_layers"]
