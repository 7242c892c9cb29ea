"""A simulated automated experiment, and the hook that puts a finished run into a real one.

Structure-property active learning: an instrument can measure a property (a spectrum, a
switching voltage) at one point at a time, each measurement is expensive, and the images are
cheap. A Gaussian process maps the descriptor of each point (the SI-VAE latents at one window)
to the property; an acquisition function picks the next point. The descriptor size decides how
fast the map is learned: this module measures that on synthetic images whose hidden property
depends on the structure at a known scale.

- :func:`hidden_property`: the property on an example image, from its ground truth: the
  fraction of domain-wall pixels (``ferroelectric_domains``) or of void pixels
  (``two_scale_texture``) within a disk of known radius around each pixel;
- :func:`learning_curve`: the loop: measure one point, refit the GP on the descriptors of the
  measured points, predict every candidate, choose the next point (largest predictive standard
  deviation, or at random), and record the prediction error after each measurement;
- :func:`next_point`: for a real instrument: encode a new frame with a finished run and return
  its descriptors, the GP's prediction and the next point to measure.

The GP is scikit-learn's :class:`~sklearn.gaussian_process.GaussianProcessRegressor` (Matern 5/2
with one length per descriptor dimension, plus a white-noise term, ``normalize_y``): it is already
a dependency, well kept, and an exact GP on at most a few hundred measurements costs
milliseconds per fit, which is all an experiment of this budget needs.

``python -m scalevae.experiment`` runs the example of ``docs/experiment.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ScaleVAEError

ACQUISITIONS = ("std", "random")
N_INITIAL = 2  # random measurements before the GP chooses: enough to fit a mean and a scale
TUNE_EVERY = 10  # measurements between hyperparameter optimisations once there are 10
MAX_NOISE_VARIANCE = 0.1  # of the normalised property (normalize_y): see make_gp
MEASUREMENT_NOISE = 0.05  # noise of a simulated measurement, in units of the property's std


def hidden_property(example, radius: float) -> np.ndarray:
    """The hidden property of an example image: a structure fraction within ``radius`` px.

    A local response that averages the structure under a probe of known radius, e.g. a PFM
    switching or dielectric response set by the a/c domain fraction under the tip.

    Parameters
    ----------
    example : scalevae.datasets.Example
        ``ferroelectric_domains`` (the fraction of a-domain pixels, ``truth["labels"] == 0``)
        or ``two_scale_texture`` (the fraction of void pixels, from ``truth["voids"]`` and
        ``truth["void_radius"]``).
    radius : float
        Radius in px of the disk the fraction is taken over: the property's known scale.

    Returns
    -------
    ndarray of float64, shape (ny, nx)

    Examples
    --------
    >>> from scalevae.datasets import ferroelectric_domains
    >>> ex = ferroelectric_domains(shape=(64, 64), period=12, seed=0)
    >>> p = hidden_property(ex, 6)
    >>> p.shape, bool(0 <= p.min() < p.max() <= 1)
    ((64, 64), True)
    """
    from scipy.signal import fftconvolve

    truth = example.truth
    if "labels" in truth and "walls" in truth:
        mask = (np.asarray(truth["labels"]) == 0).astype(np.float64)
    elif "voids" in truth:
        from scipy.spatial import cKDTree

        ny, nx = truth["region"].shape
        yy, xx = np.mgrid[0:ny, 0:nx]
        dist = cKDTree(truth["voids"]).query(np.stack([yy.ravel(), xx.ravel()], 1))[0]
        mask = (dist.reshape(ny, nx) < truth["void_radius"]).astype(np.float64)
    else:
        raise ScaleVAEError(f"the example {example.name!r} has no domain or void map; use "
                            "ferroelectric_domains or two_scale_texture")
    if not radius >= 1:
        raise ScaleVAEError(f"radius must be at least 1 px, got {radius!r}")
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = (yy ** 2 + xx ** 2 <= radius ** 2).astype(np.float64)
    # normalise by the part of the disk inside the image, so border pixels are not diluted
    inside = fftconvolve(np.ones_like(mask), disk, mode="same")
    return np.clip(fftconvolve(mask, disk, mode="same") / inside, 0.0, 1.0)


def make_gp(n_features: int, seed: int = 0):
    """The GP regressor of the loop: Matern 5/2 with one length per feature, plus white noise.

    Examples
    --------
    >>> gp = make_gp(2).fit(np.array([[0.0, 0], [1, 1], [2, 0]]), [0.0, 1.0, 0.5])
    >>> gp.predict(np.zeros((1, 2))).shape
    (1,)
    """
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = (ConstantKernel(1.0, (1e-3, 1e3))
              * Matern(length_scale=np.ones(n_features), length_scale_bounds=(1e-2, 1e3), nu=2.5)
              # noise at most ~30 % of the property's std: above it, ML-II with few points
              # tends to explain everything as noise and predict the mean
              + WhiteKernel(1e-2, (1e-6, MAX_NOISE_VARIANCE)))
    return GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=0,
                                    random_state=seed)


@dataclass
class LearningCurve:
    """Prediction error after each measurement of one loop.

    Attributes
    ----------
    n_measured : ndarray of int
        Measurements made so far, from :data:`N_INITIAL` on.
    rmse : ndarray of float
        Root-mean-square error of the GP's mean over every candidate point, divided by the
        property's standard deviation over them (1 = no better than the mean value).
    order : ndarray of int
        Indices of the candidates in the order they were measured.
    """

    n_measured: np.ndarray
    rmse: np.ndarray
    order: np.ndarray
    settings: dict = field(default_factory=dict)

    def at(self, n: int) -> float:
        """The error after ``n`` measurements."""
        hit = np.flatnonzero(self.n_measured == n)
        if not len(hit):
            raise ScaleVAEError(f"the loop made {self.n_measured.min()} to "
                                f"{self.n_measured.max()} measurements; {n} is not among them")
        return float(self.rmse[hit[0]])


def learning_curve(features, values, n_steps: int, acquisition: str = "std", seed: int = 0,
                   noise: float = MEASUREMENT_NOISE) -> LearningCurve:
    """Run the active-learning loop on candidate points with known (hidden) values.

    Parameters
    ----------
    features : (n, d) array
        The descriptor of every candidate point (standardised here, over all candidates: the
        images are known before any measurement).
    values : (n,) array
        The hidden property at each candidate; a measurement returns it plus Gaussian noise of
        ``noise`` times its standard deviation.
    n_steps : int
        Measurements to make in all (at most the number of candidates).
    acquisition : {"std", "random"}
        ``std``: measure where the GP is least sure (largest predictive std); ``random``: a
        random unmeasured candidate (the baseline).
    seed : int
        Seeds the initial points, the noise and the random choice.

    Returns
    -------
    LearningCurve

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-2, 2, (40, 2))
    >>> curve = learning_curve(x, np.sin(x[:, 0]) + x[:, 1] ** 2, n_steps=15)
    >>> bool(curve.rmse[-1] < 0.5 * curve.rmse[0])
    True
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64).ravel()
    if x.ndim != 2 or len(x) != len(y):
        raise ScaleVAEError(f"features must be (n, d) with one row per value; got {x.shape} "
                            f"for {len(y)} values")
    if acquisition not in ACQUISITIONS:
        raise ScaleVAEError(f"unknown acquisition {acquisition!r}; use one of "
                            f"{', '.join(ACQUISITIONS)}")
    n_steps = int(n_steps)
    if not N_INITIAL < n_steps <= len(y):
        raise ScaleVAEError(f"n_steps must be between {N_INITIAL + 1} and the number of "
                            f"candidates ({len(y)}), got {n_steps}")
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    rng = np.random.default_rng(seed)
    spread = y.std() if y.std() > 0 else 1.0
    measured_values = y + noise * spread * rng.standard_normal(len(y))
    order = list(rng.choice(len(y), N_INITIAL, replace=False))
    gp = make_gp(x.shape[1], seed)
    errors = []
    while True:
        _fit(gp, x[order], measured_values[order], optimise=_tune_now(len(order)))
        mean, std = gp.predict(x, return_std=True)
        errors.append(np.sqrt(np.mean((mean - y) ** 2)) / spread)
        if len(order) == n_steps:
            break
        free = np.ones(len(y), bool)
        free[order] = False
        if acquisition == "std":
            order.append(int(np.flatnonzero(free)[np.argmax(std[free])]))
        else:
            order.append(int(rng.choice(np.flatnonzero(free))))
    return LearningCurve(np.arange(N_INITIAL, n_steps + 1), np.array(errors), np.array(order),
                         {"acquisition": acquisition, "seed": seed, "noise": noise})


def _tune_now(n: int) -> bool:
    """Whether the GP's hyperparameters are optimised again at ``n`` measurements: at every
    step while the data are few, then every :data:`TUNE_EVERY` (in between only the posterior
    is updated with the last hyperparameters: the optimiser dominates the loop's time)."""
    return n <= 2 * TUNE_EVERY or n % TUNE_EVERY == 0


def _fit(gp, x, y, optimise: bool):
    """Fit ``gp``: hyperparameters optimised from the initial kernel (a warm start from the last
    fit gets stuck in the all-noise optimum once it reaches it), or the last ones kept."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    if not hasattr(gp, "initial_kernel"):
        gp.initial_kernel = gp.kernel
    gp.optimizer = "fmin_l_bfgs_b" if optimise else None
    gp.kernel = gp.initial_kernel if optimise else gp.kernel_
    with warnings.catch_warnings():
        # a length at its bound only means that feature hardly matters yet
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x, y)
    return gp


@dataclass
class Suggestion:
    """What :func:`next_point` returns.

    Attributes
    ----------
    point : ndarray, shape (3,)
        ``frame, y, x`` (px of the new frame) of the next point to measure.
    descriptors : xarray.Dataset
        The candidates' descriptors (see :func:`scalevae.descriptors.descriptors`), with the
        GP's ``predicted`` mean and ``predicted_std`` per point when values were given.
    window : int
        The window used, in px of the run's input (``descriptors.attrs["window_px"]``: of the
        frame).
    """

    point: np.ndarray
    descriptors: object
    window: int


def next_point(run, frame, pixel_size=None, unit=None, measured=None, values=None, window=None,
               points=None, device="cpu", candidates=None) -> Suggestion:
    """Encode a new frame with a finished run and suggest the next point to measure.

    Parameters
    ----------
    run : Run or str or Path
        A finished run (see :func:`scalevae.load_run`).
    frame : 2-D array (or a file)
        The new frame; ``pixel_size``, ``unit`` its calibration (windows keep their physical
        length).
    measured : (m, 2) or (m, 3) array, optional
        Positions (``y, x`` or ``frame, y, x``, px of the frame) measured so far.
    values : (m,) array, optional
        The property measured there.
    window : int, optional
        Descriptor window (px of the run's input); default the run's recommended window.
    points : (n, 2) or (n, 3) array, optional
        Candidate positions; default the run's keypoint rule on the frame.
    candidates : xarray.Dataset, optional
        ``descriptors`` of an earlier call on the same frame: the frame is not encoded again
        (the loop's later steps then cost a GP fit and the measured points' encoding).

    Returns
    -------
    Suggestion
        The next point: the candidate where the GP fitted to the measurements is least sure;
        before two measurements, the candidate whose descriptor is most typical (nearest the
        mean descriptor), a safe first look.
    """
    from .descriptors import descriptors, feature_matrix
    from .reuse import Run, load_run

    run = run if isinstance(run, Run) else load_run(run)
    if candidates is None:
        cand = descriptors(run, window=window, points=points, image=frame,
                           pixel_size=pixel_size, unit=unit, device=device)
    else:
        cand = candidates.drop_vars(["predicted", "predicted_std"], errors="ignore")
    x = feature_matrix(cand)
    scale = np.where(x.std(0) > 0, x.std(0), 1.0)
    mean = x.mean(0)
    pos = np.column_stack([cand.frame.values, cand.y.values, cand.x.values])
    if measured is None or len(measured) < N_INITIAL:
        taken = np.zeros(len(x), bool) if measured is None else _nearest_taken(pos, measured)
        dist = np.where(taken, np.inf, np.linalg.norm((x - mean) / scale, axis=1))
        return Suggestion(pos[int(np.argmin(dist))], cand, int(cand.attrs["window"]))
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) != len(measured):
        raise ScaleVAEError(f"give one value per measured point: {len(measured)} points, "
                            f"{len(values)} values")
    seen = descriptors(run, window=cand.attrs["window"], points=measured, image=frame,
                       pixel_size=pixel_size, unit=unit, state=cand.attrs["state"],
                       device=device)
    gp = _fit(make_gp(x.shape[1]), (feature_matrix(seen) - mean) / scale, values, True)
    pred, std = gp.predict((x - mean) / scale, return_std=True)
    cand["predicted"] = ("point", pred)
    cand["predicted_std"] = ("point", std)
    std = np.where(_nearest_taken(pos, measured), -np.inf, std)
    return Suggestion(pos[int(np.argmax(std))], cand, int(cand.attrs["window"]))


def _nearest_taken(pos, measured) -> np.ndarray:
    """Candidates within half a pixel of a measured position."""
    m = np.asarray(measured, dtype=np.float64)
    m = np.column_stack([np.zeros(len(m)), m]) if m.shape[1] == 2 else m
    d = np.linalg.norm(pos[:, None, :] - m[None, :, :], axis=2)
    return (d < 0.5).any(axis=1)


def example(out, period: int = 24, seed: int = 0, n_steps: int = 40, shape=(160, 160),
            n_candidates: int = 200) -> dict:
    """The example of ``docs/experiment.md``: one run, then learning curves per window choice.

    A ``ferroelectric_domains`` image of ``period``, one SI-VAE run into ``out`` (grid:4,
    default windows), the a-domain fraction within a disk one period across as the hidden
    property, and the loop with the smallest, the recommended and the largest window's latents
    and with random points; returns ``{choice: LearningCurve}`` and prints a table.
    """
    from .api import run as run_sivae
    from .datasets import ferroelectric_domains
    from .reuse import load_run

    ex = ferroelectric_domains(shape=shape, period=period, seed=seed)
    run_sivae(ex.images, keypoints="grid:4", seed=seed, quiet=True, report=False,
              pixel_size=ex.pixel_size, unit=ex.unit, out=out, overwrite=True)
    run = load_run(out)
    prop = hidden_property(ex, period / 2)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(run.result.sizes["point"], n_candidates, replace=False))
    rec = int(run.result.attrs["recommended_window"])
    choices = {f"smallest window {run.windows[0]} px": (run.windows[0], "std"),
               f"recommended window {rec} px": (rec, "std"),
               f"largest window {run.windows[-1]} px": (run.windows[-1], "std"),
               f"random points, window {rec} px": (rec, "random")}
    curves = {}
    for name, (window, acquisition) in choices.items():
        d = run.descriptors(window=int(window)).isel(point=pick)
        values = prop[d.y.values.round().astype(int), d.x.values.round().astype(int)]
        from .descriptors import feature_matrix

        curves[name] = learning_curve(feature_matrix(d), values, n_steps, acquisition, seed)
    marks = [n for n in (10, 20, 40, n_steps) if n <= n_steps]
    print(f"domain period {period} px; recommended window {rec} px; error (RMSE / std of "
          "the property) after N measurements")
    print(f"{'descriptor':36s}" + "".join(f"{'N=' + str(n):>8s}" for n in sorted(set(marks))))
    for name, curve in curves.items():
        print(f"{name:36s}" + "".join(f"{curve.at(n):8.3f}" for n in sorted(set(marks))))
    return curves


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m scalevae.experiment",
                                     description="simulated automated experiment: learning "
                                     "curves of a GP on SI-VAE descriptors per window")
    parser.add_argument("--out", required=True, help="folder for the SI-VAE run")
    parser.add_argument("--period", type=int, default=24, help="domain period in px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=40, help="measurements per loop")
    args = parser.parse_args()
    try:
        example(args.out, args.period, args.seed, args.steps)
    except ScaleVAEError as exc:
        raise SystemExit(f"scalevae: error: {exc}") from None
