"""Synthetic example data with known ground truth.

Four generators mimic the paper's data sets and one adds a case built to test the method itself:

- :func:`ferroelectric_domains` -- PFM amplitude of an a/c domain film (paper Section IV);
- :func:`graphene_movie` -- STEM HAADF movie of graphene damaged by the beam (Section V);
- :func:`combinatorial_library` -- AFM topography across a composition spread (Section VI);
- :func:`two_scale_texture` -- one fine texture, two large-scale arrangements, with an exact
  critical window below which no descriptor can tell the two regions apart.

Every generator is deterministic for a ``seed``, runs in well under a few seconds at its default
size and returns an :class:`Example` whose ``truth`` dictionary holds what the image was built
from. ``load_example(name)`` picks one by name from :data:`EXAMPLES`.

What lives where: one generator per module (``domains``, ``graphene``, ``library``,
``two_scale``); ``_common`` holds the :class:`Example` record, the argument checks and the image
models the generators share; this module holds the registry.
"""

from __future__ import annotations

import inspect

from ..errors import ScaleVAEError
from ._common import Example
from .domains import ferroelectric_domains
from .graphene import graphene_movie
from .library import combinatorial_library
from .two_scale import two_scale_texture

__all__ = [
    "Example",
    "ferroelectric_domains",
    "graphene_movie",
    "combinatorial_library",
    "two_scale_texture",
    "EXAMPLES",
    "load_example",
]


EXAMPLES = {
    "domains": ferroelectric_domains,
    "graphene": graphene_movie,
    "library": combinatorial_library,
    "twoscale": two_scale_texture,
}


def load_example(name, seed=0, **kw):
    """Generate the example data set ``name`` (see :data:`EXAMPLES`).

    Parameters
    ----------
    name : str
        One of ``"domains"``, ``"graphene"``, ``"library"``, ``"twoscale"``.
    seed : int
        Random seed; the same seed gives the same data.
    **kw
        Keyword arguments of the generator (``shape``, ``n_frames``, ...).

    Returns
    -------
    Example

    Examples
    --------
    >>> ex = load_example("twoscale", shape=(128, 128), critical_window=16)
    >>> ex.name, ex.default_keypoints
    ('twoscale', 'grid:4')
    """
    if not isinstance(name, str) or name not in EXAMPLES:
        raise ScaleVAEError(f"unknown example {name!r}: choose one of {', '.join(EXAMPLES)}")
    func = EXAMPLES[name]
    allowed = [p for p in inspect.signature(func).parameters if p != "seed"]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ScaleVAEError(f"example {name!r} has no option {', '.join(unknown)}; "
                            f"its options are {', '.join(allowed)}")
    return func(seed=seed, **kw)
