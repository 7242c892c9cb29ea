"""The run folder (``--out``): its files, the checks before a run writes there, atomic saves.

A run folder holds ``config.json`` (the settings and the input's fingerprint), ``input.npy``
(the image stack as read), ``checkpoints/window_NNNN.pt`` (one per finished window) with
``checkpoints/manifest.json`` (their sizes and hashes), ``result.nc`` and ``report.html``.
Every file is written atomically, so a killed run leaves either the old file or the new one,
never half of one. While a run uses the folder it holds ``.scalevae.lock``
(:mod:`scalevae._lock`): a second run into the same folder is refused, naming the first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from ._atomic import atomic_write, check_writable, file_size_limit_as_error, remove_leftovers
from ._atomic import write_error
from ._lock import lock_folder
from .errors import ScaleVAEError
from .results import result_format, save_result

RUN_FILES = ("config.json", "result.nc", "result.zarr", "report.html", "input.npy", "checkpoints")


def fingerprint(data, points, config: dict) -> str:
    """What makes two runs the same: the input, the keypoints and the settings (not the device).

    Examples
    --------
    >>> import numpy as np
    >>> a = fingerprint(np.zeros((1, 8, 8)), np.zeros((2, 3)), {"seed": 0, "device": "cpu"})
    >>> a == fingerprint(np.zeros((1, 8, 8)), np.zeros((2, 3)), {"seed": 0, "device": "cuda"})
    True
    >>> a == fingerprint(np.zeros((1, 8, 8)), np.zeros((2, 3)), {"seed": 1, "device": "cpu"})
    False
    """
    h = hashlib.sha256()
    if getattr(data, "lazy", False):  # io.LazyFrames: hashed block by block, as read
        for _, block in data.chunks():
            h.update(np.ascontiguousarray(block).tobytes())
    else:
        h.update(np.ascontiguousarray(data).tobytes())
    h.update(np.ascontiguousarray(points).tobytes())
    keep = {k: v for k, v in config.items() if k not in ("device", "input")}
    h.update(json.dumps(keep, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class RunDir:
    """A run folder: prepare it for a run, write the run's inputs, save its result.

    Parameters
    ----------
    path : str or Path
        The folder (created if needed).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> folder = RunDir(tempfile.mkdtemp())
    >>> folder.prepare("0123abcd", resume=False, overwrite=False)
    >>> folder.write_inputs({"fingerprint": "0123abcd"}, np.zeros((1, 8, 8), "float32"))
    >>> sorted(p.name for p in folder.path.iterdir())
    ['.scalevae.lock', 'checkpoints', 'config.json', 'input.npy']
    >>> folder.result_path.name, folder.report_path.name
    ('result.nc', 'report.html')
    >>> folder.release()  # or when the object is gone; the lock file goes with the lock
    >>> sorted(p.name for p in folder.path.iterdir())
    ['checkpoints', 'config.json', 'input.npy']
    """

    def __init__(self, path, result_format: str = "auto"):
        self.path = Path(path)
        self.result_format = result_format  # "auto", "netcdf" or "zarr" (results.result_format)
        self._lock = None  # the folder's run lock, taken by prepare, held while this object lives

    def __str__(self):
        return str(self.path)

    @property
    def checkpoints(self) -> Path:
        """The folder of the per-window checkpoints."""
        return self.path / "checkpoints"

    @property
    def result_path(self) -> Path:
        """``result.zarr`` when the run wrote (or was asked for) Zarr, else ``result.nc``."""
        zarr = self.result_format == "zarr" or (self.result_format == "auto"
                                                 and (self.path / "result.zarr").exists())
        return self.path / ("result.zarr" if zarr else "result.nc")

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    def prepare(self, fingerprint: str, resume: bool, overwrite: bool) -> None:
        """Make the folder ready for a run with this ``fingerprint``.

        An empty or new folder is used as it is; one holding a scalevae run is continued
        (``resume``, same fingerprint only) or emptied of the run's files (``overwrite``);
        anything else is refused, so that nothing of the user's is overwritten. The folder's
        lock is taken first, so a second run into it is refused whatever its options; it is
        held until :meth:`release`, until this object is gone, or until the process ends.
        """
        out = self.path
        if out.exists() and not out.is_dir():
            raise ScaleVAEError(f"--out {out} is a file; give a folder")
        check_writable(out)
        self._lock = lock_folder(out)
        try:
            self._check_contents(fingerprint, resume, overwrite)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Let other runs use the folder (the lock also goes when this object is gone)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _check_contents(self, fingerprint: str, resume: bool, overwrite: bool) -> None:
        out = self.path
        present = [p for p in out.iterdir() if not p.name.startswith(".")]
        if not present:
            return
        if not (out / "config.json").exists():
            raise ScaleVAEError(f"--out {out} is not empty and holds no scalevae run; choose a new "
                                "or empty folder so that nothing of yours is overwritten")
        try:
            old = json.loads((out / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ScaleVAEError(f"{out / 'config.json'} is damaged; choose another --out folder "
                                "or delete that run") from exc
        if resume:
            if old.get("fingerprint") != fingerprint:
                raise ScaleVAEError(f"--out {out} holds a run with other settings or input "
                                    f"(windows {old.get('windows')}, keypoints "
                                    f"{old.get('keypoints')}, seed {old.get('seed')}); resume "
                                    "with exactly the same options, or choose another folder")
            return
        if not overwrite:
            raise ScaleVAEError(f"--out {out} already holds a scalevae run; add --resume to "
                                "continue it, --overwrite to replace it, or choose another folder")
        for name in RUN_FILES:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def write_inputs(self, config: dict, data: np.ndarray) -> None:
        """Create ``checkpoints/``, clear a killed run's temporaries, write config.json and
        input.npy."""
        self.checkpoints.mkdir(exist_ok=True)
        # a killed run may have left half-written temporaries of its own files
        remove_leftovers(self.path, [n for n in RUN_FILES if "." in n])
        remove_leftovers(self.checkpoints, ["window_*.pt", "manifest.json"])
        for tmp in self.path.glob(".result.zarr.*"):  # a Zarr result's temporary is a folder
            shutil.rmtree(tmp, ignore_errors=True)
        self.write_config_and_input(config, data)

    def write_config_and_input(self, config: dict, data) -> None:
        """config.json and input.npy (the report draws the image from it), each atomically."""
        text = json.dumps(config, indent=2, default=str)
        atomic_write(self.path / "config.json", lambda tmp: Path(tmp).write_text(text))
        atomic_write(self.path / "input.npy", lambda tmp: _save_npy(tmp, data))

    def save_result(self, ds) -> Path:
        """Write the result Dataset atomically to ``result.nc``, or ``result.zarr`` when asked
        or when it is large (:func:`scalevae.results.result_format`); the other one is removed."""
        name = "result.zarr" if result_format(ds, self.result_format) == "zarr" else "result.nc"
        try:  # result.nc reports its own write errors; a Zarr store is written by zarr's I/O
            with file_size_limit_as_error():
                path = save_result(ds, self.path / name)
        except OSError as exc:
            raise write_error(self.path / name, exc) from exc
        other = self.path / ("result.nc" if name == "result.zarr" else "result.zarr")
        if other.is_dir():
            shutil.rmtree(other)
        elif other.exists():
            other.unlink()
        self.result_format = "zarr" if name == "result.zarr" else "netcdf"
        return path


def _save_npy(tmp, data):
    with open(tmp, "wb") as fh:
        if getattr(data, "lazy", False):  # io.LazyFrames: copied block by block
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                      "fortran_order": False, "shape": tuple(data.shape)}
            np.lib.format.write_array_header_1_0(fh, header)
            for _, block in data.chunks():
                fh.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
        else:
            np.save(fh, data)
