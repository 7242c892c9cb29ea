"""Old home of :mod:`scalevae.reuse` (:func:`load_run`, :func:`apply`, :class:`Run`); kept so
that ``scalevae.runs`` imports keep working."""

from .reuse import Run, apply, load_run  # noqa: F401

__all__ = ["Run", "apply", "load_run"]
