"""Command line: ``scalevae run``, ``scalevae demo``, ``scalevae apply``, ``scalevae report``,
``scalevae channels``, ``scalevae export``.

A thin layer over :func:`scalevae.run`. Mistakes in what the user gave exit with code 2 and one
line that says what to fix, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from . import __version__, config
from .errors import ScaleVAEError
from .rundir import RunDir


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake becomes the same one-line error as any other (exit 2)."""

    def error(self, message):
        raise ScaleVAEError(f"{message}; see `{self.prog} --help`")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="scalevae", description="Scale-invariant VAE (SI-VAE): "
                                "find the length scales at which structure changes in images.")
    p.add_argument("--version", action="version", version=f"scalevae {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the SI-VAE on an image file or stack")
    r.add_argument("images", metavar="INPUT", help="image file: .tif/.tiff, .npy/.npz, .png, .h5 (NSID), .ibw, .dm3/.dm4")
    r.add_argument("--channel", help="channel to read (e.g. AmplitudeRetrace); "
                   "`scalevae channels FILE` lists them")
    _training_options(r, windows_default=None)
    r.add_argument("--pixel-size", type=float, help="pixel size (overrides the file's calibration)")
    r.add_argument("--unit", help="unit of --pixel-size (nm, um, A, ...)")

    d = sub.add_parser("demo", help="run on built-in example data (no file needed)")
    d.add_argument("name", nargs="?", default="domains",
                   help="example: domains (default), graphene, library, twoscale")
    _training_options(d, windows_default=None, keypoints_default=None)

    ap = sub.add_parser("apply", help="encode a new image with a finished run's models")
    ap.add_argument("run_dir", help="the --out folder of a finished `scalevae run`")
    ap.add_argument("images", metavar="INPUT", help="image file to encode (any format `scalevae run` reads)")
    ap.add_argument("--channel", help="channel to read (e.g. AmplitudeRetrace)")
    ap.add_argument("--keypoints", help="grid:STEP | atoms | atoms:SIZE | sift | FILE.csv "
                    "(default: the run's, its grid step scaled with the pixel size)")
    ap.add_argument("--pixel-size", type=float, help="pixel size of INPUT (overrides the "
                    "file's); windows keep the run's physical lengths")
    ap.add_argument("--unit", help="unit of --pixel-size (nm, um, A, ...)")
    ap.add_argument("--device", default=config.DEVICE, help=" | ".join(config.DEVICES)
                    + " (default: %(default)s, CUDA when present)")
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier result in --out")
    ap.add_argument("--no-report", action="store_true", help="do not write report.html")
    ap.add_argument("--quiet", action="store_true", help="no progress output (the summary "
                    "is printed)")
    ap.add_argument("--out", required=True, help="folder for the applied result")

    rep = sub.add_parser("report", help="(re)write RUN_DIR/report.html from a finished run")
    rep.add_argument("run_dir")

    ch = sub.add_parser("channels", help="list the channels of an image file")
    ch.add_argument("images", metavar="INPUT")
    _add_export(sub)
    return p


def _training_options(p, windows_default=None, keypoints_default=config.KEYPOINTS):
    p.add_argument("--keypoints", default=keypoints_default,
                   help="grid:STEP | atoms | atoms:SPACING (nearest-neighbour atom spacing in px; found from the image's periodicity when omitted) | sift | FILE.csv (frame,y,x) "
                        "(default: %(default)s)")
    p.add_argument("--windows", default=windows_default,
                   help="START:STOP:STEP in px or with units (20nm:200nm:20nm), or 8,16,32")
    p.add_argument("--invariance", default=config.INVARIANCE, choices=list(config.INVARIANCES))
    p.add_argument("--latent-dim", type=int, default=config.LATENT_DIM)
    p.add_argument("--epochs", type=int, default=config.EPOCHS,
                   help=f"cap on epochs per window (default {config.EPOCHS}); "
                   "training stops earlier when converged")
    p.add_argument("--batch-size", type=int, default=config.BATCH_SIZE)
    p.add_argument("--max-train-points", type=_max_points, default=config.MAX_TRAIN_POINTS,
                   help="train on at most N keypoints, a fixed random subset, "
                   f"'{config.ALL_POINTS}' for every one (default {config.MAX_TRAIN_POINTS}); "
                   "every keypoint is encoded")
    p.add_argument("--patch-size", type=int,
                   help="common size every window is resampled to (default: chosen from the "
                   f"image's spectrum, {config.PIXELS_PER_PERIOD} px per finest period in the "
                   f"largest window, from the smallest window up to {config.MAX_DEFAULT_PATCH} px)")
    p.add_argument("--padding", choices=list(config.PADDING_MODES),
                   help="keep border keypoints by padding instead of dropping them")
    p.add_argument("--seed", type=int, default=config.SEED)
    p.add_argument("--repeats", type=int, default=1,
                   help="models trained on the same patches (seeds SEED, SEED+1, ...); the "
                   "recommended window pools them (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for training, shared among the repeats (default: one per "
                   "model; 2 is 1.45x faster on idle cores, 2x slower on busy ones); the same "
                   "count gives the same numbers")
    p.add_argument("--device", default=config.DEVICE, help=" | ".join(config.DEVICES)
                   + " (default: %(default)s, CUDA when present)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument("--quiet", action="store_true", help="no progress output (the summary "
                   "is printed)")
    p.add_argument("--out", required=True, help="run folder (created if needed)")
    p.add_argument("--format", dest="result_format", choices=("auto", "netcdf", "zarr"),
                   default="auto", help="result file: result.nc (netcdf) or result.zarr (zarr); "
                   "auto: Zarr for results above 2 GiB")


def _max_points(text):
    if text.strip().lower() == config.ALL_POINTS:
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of keypoints or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of keypoints or 'all', got {n}")
    return n


def _run_kwargs(a) -> dict:
    return dict(windows=a.windows, patch_size=a.patch_size, invariance=a.invariance,
                latent_dim=a.latent_dim, epochs=a.epochs, batch_size=a.batch_size,
                max_train_points=a.max_train_points, repeats=getattr(a, "repeats", 1),
                threads=getattr(a, "threads", None),
                padding=a.padding, seed=a.seed, device=a.device, out=a.out, resume=a.resume,
                overwrite=a.overwrite, quiet=a.quiet, report=not a.no_report,
                result_format=getattr(a, "result_format", "auto"))


def _cmd_run(a):
    from .api import run

    ds = run(a.images, keypoints=a.keypoints, channel=a.channel, pixel_size=a.pixel_size,
             unit=a.unit, **_run_kwargs(a))
    _summary(ds, a)


def _cmd_demo(a):
    from .api import run
    from .datasets import load_example

    ex = load_example(a.name)
    keypoints = a.keypoints or ex.default_keypoints or ex.keypoints
    kw = _run_kwargs(a)
    kw["windows"] = a.windows or ex.default_windows
    ds = run(ex.images, keypoints=keypoints, pixel_size=ex.pixel_size, unit=ex.unit,
             control=ex.control, control_name=ex.control_name, **kw)
    _summary(ds, a, known=_known_answer(ex))


def _cmd_apply(a):
    from .reuse import apply

    ds = apply(a.run_dir, a.images, out=a.out, keypoints=a.keypoints, channel=a.channel,
               pixel_size=a.pixel_size, unit=a.unit, device=a.device, overwrite=a.overwrite,
               report=not a.no_report, quiet=a.quiet)
    print(f"applied the run in {a.run_dir}")
    _summary(ds, a)


# what each example's ground truth says the length scale is: (truth key, words, unit)
_KNOWN = (("period", "domain period", "px"), ("critical_window", "critical window", "px"),
          ("cc_distance", "C-C distance", "px"),
          ("target_grain_size", "grain diameter", "px"))


def _known_answer(ex) -> str | None:
    """The example's ground-truth length scale in words, e.g. "domain period 24 px"."""
    for key, words, unit in _KNOWN:
        if key in ex.truth:
            v = np.atleast_1d(np.asarray(ex.truth[key], dtype=float))
            value = f"{v[0]:.3g}" if v.size == 1 else f"{v.min():.3g}-{v.max():.3g}"
            return f"{words} {value} {unit}"
    return None


def _summary(ds, a, known=None):
    """What the run found; printed with --quiet too (quiet only hides the progress bar)."""
    if getattr(a, "silent_rank", False):  # rank 0 prints it once
        return
    out = RunDir(a.out)
    n = ds.sizes["point"]
    dropped = ds.attrs.get("n_dropped", 0)
    print(f"{n} keypoints x {ds.sizes['window']} windows "
          f"({int(ds.window[0])}..{int(ds.window[-1])} px); {dropped} keypoints dropped at the border")
    n_train = int(ds.attrs.get("n_train_points", n))
    if n_train < n:
        print(f"trained on {n_train} of the {n} keypoints (a fixed random subset, "
              "--max-train-points); all of them are encoded")
    if ds.attrs.get("input_note"):
        print(f"note: the input was converted: {ds.attrs['input_note']}")
    if str(ds.attrs.get("windows_reason", "")).startswith("default: from"):
        print(f"windows {ds.attrs['windows_reason']}")  # why the range starts below 8 px
    if (ds.attrs.get("patch_size_reason") not in (None, "", "given")
            and int(ds.attrs["patch_size"]) != int(ds.window[0])):
        print(ds.attrs["patch_size_reason"])  # why the smallest windows are upsampled
    if "recommended_window" in ds.attrs:
        from .io.units import physical_pixel

        from .analysis.multiscale import bracketing_windows, noise_limited
        from .analysis.recommend import describe_recommendation

        size, unit = physical_pixel(ds.attrs.get("pixel_size"), ds.attrs.get("unit"))
        answer = f" (known answer: {known})" if known else ""
        print(describe_recommendation(ds) + answer)
        models = json.loads(ds.attrs.get("recommended_window_per_model", "[]"))
        if len(models) > 1:
            print(f"pooled over {len(models)} models; each alone (* conclusive): " + ", ".join(
                f"seed {m['seed']}: {m['window']} px{'*' if m['conclusive'] else ''}"
                for m in models))
        period = float(ds.attrs.get("spectral_period", float("nan")))
        if not noise_limited(period):  # a peak at the pixel limit is noise, not a period
            print(f"baseline without the model: the image's strongest spectral period is "
                  f"{period:.1f} px" + (f" ({period * size:.4g} {unit})" if size else ""))
            if int(ds.attrs.get("length_scales_gradual", 0)):
                shape = json.loads(ds.attrs["image_shape"]) if "image_shape" in ds.attrs else None
                windows = bracketing_windows(period, shape, ran=ds["window"].values)
                print(f"to read a length scale, rerun with windows around that period: "
                      f"--windows {windows} (a third of it to twice it; see the README)")
        rises = json.loads(ds.attrs.get("length_scales", "[]"))
        if len(rises) > 1:
            print("length scales (regrouping rises, strongest first): " + "; ".join(
                f"{r['middle']} px (from {r['onset']} to {r['end']} px, "
                f"{100 * r['strength']:.0f} % of the regrouping)" for r in rises))
        if ds.attrs.get("recommended_window_note"):
            print(f"caution: {ds.attrs['recommended_window_note']}")
    elif known:
        print(f"known answer: {known}")
    if "window_px" in ds.attrs:
        px = json.loads(ds.attrs["window_px"])
        if px != ds.window.values.tolist():
            print(f"windows in px of this image: {', '.join(map(str, px))} (the run's "
                  f"{', '.join(map(str, ds.window.values.tolist()))} px at its pixel size)")
    print(f"result: {out.result_path}")
    if out.report_path.exists():
        print(f"report: {out.report_path}")


def _cmd_report(a):
    from .report import write_report

    write_report(a.run_dir)
    print(Path(a.run_dir) / "report.html")


def _add_export(sub):
    e = sub.add_parser("export", help="write a run's descriptors (latents and/or patches at "
                       "one window, the recommended one by default) to .nc or .npz")
    e.add_argument("run_dir", help="the --out folder of a finished `scalevae run`")
    e.add_argument("--window", type=int, help="a window of the run in px (default: the "
                   "recommended window)")
    e.add_argument("--kind", default="latents", choices=("latents", "patches", "both"))
    e.add_argument("--out", required=True, help="FILE.nc (netCDF) or FILE.npz (NumPy)")


def _cmd_export(a):
    from .descriptors import export

    path = export(a.run_dir, a.out, window=a.window, kind=a.kind)
    print(path)


def _cmd_channels(a):
    from .io.channels import describe_channels, format_channels

    print(format_channels(describe_channels(a.images)))


def _format_warning(message, category, filename, lineno, line=None):
    return f"scalevae: warning: {message}\n"


@contextlib.contextmanager
def _process_state(rank):
    """What the command line changes for the process, restored when it returns: warnings as one
    plain line (and none on the ranks that are not rank 0: rank 0 gives the same warnings
    once), tifffile's own log quiet (it logs a broken file before raising; the user gets our
    message), and under torchrun a SIGTERM handler that says why a rank was stopped."""
    import signal

    logger = logging.getLogger("tifffile")
    level, formatwarning = logger.level, warnings.formatwarning
    handler = signal.getsignal(signal.SIGTERM) if rank is not None else None
    with warnings.catch_warnings():  # restores the filters (not formatwarning: below)
        warnings.formatwarning = _format_warning
        if rank not in (None, "0"):
            warnings.simplefilter("ignore")
        logger.setLevel(logging.ERROR)
        if rank is not None:
            signal.signal(signal.SIGTERM, _stopped(rank))
        try:
            yield
        finally:
            logger.setLevel(level)
            warnings.formatwarning = formatwarning
            if rank is not None:
                signal.signal(signal.SIGTERM, handler)


def _distributed_rank():
    """This process's rank under torchrun (text), or None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    return os.environ.get("RANK", "?")


def _stopped(rank):
    """A SIGTERM handler: a rank stopped by torchrun (after another rank failed) says why in
    one line instead of dying silently."""
    import os

    def stopped(signum, frame):
        print(f"scalevae: error: rank {rank} was stopped because another process of the "
              "distributed run failed (see its message above); finished windows are saved in "
              "--out: rerun the same command with --resume to continue", file=sys.stderr)
        sys.stderr.flush()
        os._exit(143)

    return stopped


def _quiet_rank(args, rank):
    """Only rank 0 of a distributed run prints its summary and progress."""
    args.silent_rank = rank not in (None, "0")
    if args.silent_rank and hasattr(args, "quiet"):
        args.quiet = True


def _leave_process_group():
    import torch.distributed as tdist

    if tdist.is_initialized():
        tdist.destroy_process_group()


def main(argv=None) -> int:
    rank = _distributed_rank()
    with _process_state(rank):
        try:
            args = _parser().parse_args(argv)
            _quiet_rank(args, rank)
            {"run": _cmd_run, "demo": _cmd_demo, "apply": _cmd_apply, "report": _cmd_report,
             "channels": _cmd_channels, "export": _cmd_export}[args.command](args)
        except ScaleVAEError as exc:
            # one line, whatever a wrapped library message looked like
            print("scalevae: error: " + " ".join(str(exc).split()), file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("\nscalevae: interrupted; finished windows are saved in --out; add --resume "
                  "to continue", file=sys.stderr)
            return 130
        finally:
            if rank is not None:
                _leave_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
