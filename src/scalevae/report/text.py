"""The report's text blocks: the data at a glance, the training verdict and timings, and the
recommendation card with its baselines; each reads the result Dataset. What the run stored for
them (the recommendation, its state's length scales) is read here too."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .. import plot
from ..analysis.recommend import describe_recommendation
from ..errors import ScaleVAEError
from .page import esc, json_attr, table



def summary_table(ds, image, phys):
    """The data at a glance: image shape, pixel size, keypoints, windows, model settings."""
    ps, unit = phys
    windows = [int(w) for w in ds["window"].values]
    shape = tuple(image.shape) if image is not None else json_attr(ds, "image_shape")
    frames = np.unique(ds["frame"].values) if "frame" in ds.coords else [0]
    rows = [
        ("image (frames, y, x)", "unknown" if shape is None else " x ".join(map(str, shape))),
        ("pixel size", f"{ps:g} {unit}" if ps else "unknown (windows in px only)"),
        ("keypoints", f"{ds.sizes['point']} over {len(frames)} frame(s)"
         + (f"; {ds.attrs['n_dropped']} dropped (largest window not inside the image)"
            if "n_dropped" in ds.attrs else "")),
        ("windows", ", ".join(plot.window_label(w, ps, unit) for w in windows)),
        ("patch size (common resampled size)", f"{int(ds.attrs.get('patch_size', 0))} px"),
        ("invariance", ds.attrs.get("invariance", "unknown")),
        ("latent dimensions", ds.sizes["latent"]),
        ("scalevae version", ds.attrs.get("version", "unknown")),
    ]
    if "control" in ds.coords:
        c = ds["control"]
        name = c.attrs.get("long_name") or c.attrs.get("name") or "control"
        rows.append((name, f"{float(c.min()):g} ... {float(c.max()):g}"))
    return table(rows)


def training_text(ds, phys):
    """Below the training figures: the posterior-collapse verdict, KL per latent, timings."""
    out = []
    kl_last = ds["kl"].isel(window=-1)
    dead = [str(k) for k in ds["latent"].values
            if float(kl_last.sel(latent=k)) < plot.COLLAPSE_NATS]
    if dead:
        out.append(f'<div class="card warn">Latent(s) {esc(", ".join(dead))} carry less than '
                   f"{plot.COLLAPSE_NATS} nats at the last window: they collapsed to the prior "
                   "and hold no information. Figures of those latents show noise.</div>")
    else:
        out.append(f'<div class="card">Every latent carries more than {plot.COLLAPSE_NATS} '
                   "nats at the last window: no posterior collapse.</div>")
    rows = [(str(k), f"{float(v):.3g}") for k, v in zip(ds["latent"].values, kl_last.values)]
    out.append(table(rows, ["latent", "KL at the last window (nats)"]))
    timings = json_attr(ds, "timings")
    if isinstance(timings, dict) and timings:
        out.append("<h3>Timings</h3>")
        out.append(table([(k, f"{float(v):.2f}") for k, v in timings.items()],
                         ["stage", "seconds"]))
    per_window = json_attr(ds, "window_seconds")
    if isinstance(per_window, list) and len(per_window) == ds.sizes["window"]:
        out.append(table([(plot.window_label(w, *phys), f"{float(s):.2f}")
                          for w, s in zip(ds["window"].values, per_window)],
                         ["window", "training seconds"]))
    return out


def stored_scales(ds, state):
    """The length scales of ``state`` as the run stored them (``length_scale_curves``: the
    Dataset of :func:`scalevae.analysis.length_scales` as xarray's ``to_dict``, JSON text),
    or None when the result holds none for this state and these windows.

    Examples
    --------
    >>> import json
    >>> from scalevae.testing import make_fake_result
    >>> from scalevae.analysis import length_scales
    >>> ds = make_fake_result(n_windows=4)
    >>> s = length_scales(ds, "final")
    >>> ds.attrs["length_scale_curves"] = json.dumps(s.to_dict(data="list", encoding=False),
    ...                                              default=lambda v: v.item())
    >>> stored_scales(ds, "final").identical(s), stored_scales(ds, "instant")
    (True, None)
    """
    text = ds.attrs.get("length_scale_curves")
    if not isinstance(text, str):
        return None
    try:
        scales = xr.Dataset.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: computed again
    same_windows = ("window" in scales.coords and np.array_equal(
        scales["window"].values, ds["window"].values))
    return scales if scales.attrs.get("state") == state and same_windows else None


def with_pooled_answer(scales, ds):
    """``scales`` (the curves of the result's first model) carrying the answer the result
    stores when it pools several models (``--repeats``), so that the figure states the
    answer the card gives; unchanged for one model.

    Examples
    --------
    >>> import json, xarray as xr
    >>> s = xr.Dataset({"recommended_window": 20, "conclusive": True})
    >>> ds = xr.Dataset(attrs={"recommended_window_repeats": 3, "recommended_window": 16,
    ...                        "recommended_window_interval": [12, 28],
    ...                        "recommended_window_conclusive": 0,
    ...                        "recommended_window_answer": "gradual"})
    >>> p = with_pooled_answer(s, ds)
    >>> int(p["recommended_window"]), bool(p["conclusive"]), p.attrs["pooled_models"]
    (16, False, 3)
    """
    a = ds.attrs
    n = int(a.get("recommended_window_repeats", 1))
    if n < 2 or "recommended_window_interval" not in a:
        return scales
    lo, hi = (int(v) for v in a["recommended_window_interval"])
    kind = str(a.get("recommended_window_answer", ""))
    pooled = scales.assign(recommended_window=int(a["recommended_window"]),
                           recommended_low=lo, recommended_high=hi,
                           conclusive=bool(int(a["recommended_window_conclusive"])),
                           gradual=kind == "gradual", still_rising=kind == "unfinished")
    pooled.attrs.update(scales.attrs, pooled_models=n)
    return pooled


def stored_recommendation(ds, scales=None):
    """The recommendation as the run stored it (``recommended_window*`` and ``length_scales*``
    attributes: nothing recomputed), or, for a result saved without them, read from
    ``scales`` (:func:`scalevae.analysis.length_scales`); None when neither is there.

    Returns
    -------
    dict or None
        ``window``, ``low``, ``high`` (px), ``state``, ``conclusive``, ``gradual``,
        ``still_rising``, ``significant`` (bool), ``rises`` (list of dicts with ``onset``,
        ``middle``, ``end``, ``strength``, strongest first), ``rule`` and ``note`` (str).

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset(attrs={"recommended_window": 20, "recommended_window_range": [16, 28],
    ...                        "recommended_window_state": "instant"})
    >>> r = stored_recommendation(ds)
    >>> r["window"], r["low"], r["high"], r["state"], r["conclusive"]
    (20, 16, 28, 'instant', True)
    """
    a = ds.attrs
    if "recommended_window" in a:
        lo, hi = (int(v) for v in np.ravel(a.get("recommended_window_range",
                                                  [a["recommended_window"]] * 2)))
        rises = json_attr(ds, "length_scales")
        kind = str(a.get("recommended_window_answer", ""))  # pooled models: theirs
        return {"window": int(a["recommended_window"]), "low": lo, "high": hi,
                "state": str(a.get("recommended_window_state", "final")),
                "conclusive": bool(int(a.get("recommended_window_conclusive", 1))),
                "gradual": (kind == "gradual" if kind else
                            bool(int(a.get("length_scales_gradual", 0)))),
                "still_rising": (kind == "unfinished" if kind else
                                 bool(int(a.get("length_scales_still_rising", 0)))),
                "models": json_attr(ds, "recommended_window_per_model") or [],
                "significant": bool(int(a.get("recommended_window_significant", 1))),
                "rises": rises if isinstance(rises, list) else [],
                "rule": str(a.get("recommended_window_rule", "")),
                "note": str(a.get("recommended_window_note", "")),
                # the one wording of the answer, shared with the CLI and validation
                "sentence": describe_recommendation(ds)}
    if scales is None:
        return None
    flag = (lambda k, default: bool(scales[k]) if k in scales else default)
    rises = []
    if "rise_middle" in scales:
        rises = [{"onset": int(o), "middle": int(m), "end": int(e), "strength": float(st)}
                 for o, m, e, st in zip(scales["rise_onset"].values,
                                        scales["rise_middle"].values,
                                        scales["rise_end"].values, scales["rise_strength"].values)]
    rec = int(scales["recommended_window"])
    return {"window": rec, "low": int(scales.get("recommended_low", rec)),
            "high": int(scales.get("recommended_high", rec)),
            "state": str(scales.attrs.get("state", "final")),
            "conclusive": flag("conclusive", True), "gradual": flag("gradual", False),
            "still_rising": flag("still_rising", False), "significant": flag("significant", True),
            "rises": rises, "rule": str(scales.attrs.get("rule", "")),
            "note": str(scales.attrs.get("note", "")), "sentence": ""}


def _range_html(rec, phys):
    lo, hi, w = rec["low"], rec["high"], rec["window"]
    if lo == hi == w:
        return "<div>Interval: this window alone (a sharp change of scale).</div>"
    return (f"<div>Interval: {esc(plot.window_label(lo, *phys))} to "
            f"{esc(plot.window_label(hi, *phys))} (the windows holding 90 % of the "
            "recommendations over resampled keypoints).</div>")


def _models_html(rec, phys):
    """With ``--repeats``: each model's own answer beside the pooled one."""
    models = rec.get("models") or []
    if len(models) < 2:
        return ""
    each = ", ".join(f"seed {int(m['seed'])}: {esc(plot.window_label(int(m['window']), *phys))}"
                     + (" (conclusive)" if m.get("conclusive") else "") for m in models)
    return (f"<div>Pooled over {len(models)} models trained on the same patches; each alone: "
            f"{each}. The figures show the first model's latents.</div>")


def _rises_html(rec, phys):
    """Every rise of the regrouping: each is a length scale of its own."""
    if len(rec["rises"]) < 2:
        return ""
    rows = [f"{esc(plot.window_label(int(r['middle']), *phys))} (rises from {int(r['onset'])} "
            f"to {int(r['end'])} px, {100 * float(r['strength']):.0f} % of the regrouping)"
            for r in rec["rises"]]
    return ("<div>Every length scale the regrouping shows (strongest first): "
            + "; ".join(rows) + ".</div>")


def baselines_html(ds, image, state, phys):
    """What simple descriptors find, beside the VAE: the image's spectral period, and how
    far the latents group keypoints like each patch's mean and std do."""
    from ..analysis.multiscale import patch_statistics, spectral_period

    parts = []
    if image is not None:
        frames = image if image.ndim == 3 else image[None]
        try:
            period = float(ds.attrs.get("spectral_period", np.nan))  # stored by run()
            if not np.isfinite(period):
                period = spectral_period(frames[: min(len(frames), 8)])
            parts.append(f"the image's strongest spectral period is "
                         f"{esc(plot.window_label(int(round(period)), *phys))} "
                         f"({period:.1f} px)")
        except ScaleVAEError as exc:
            parts.append(f"no spectral period ({esc(str(exc))})")
        try:
            stats = patch_statistics(frames, ds, state=state)
            agree = stats["agreement"].values
            parts.append("the latents' pairwise distances agree with those of each patch's "
                         f"(mean, std) with rank correlation {np.nanmin(agree):.2f}-"
                         f"{np.nanmax(agree):.2f} over the windows (1: the VAE sorts by "
                         "brightness and contrast alone; low: it describes more than that)")
        except ScaleVAEError:
            pass
    if not parts:
        return ""
    return "<div><b>Baselines:</b> " + "; ".join(parts) + ".</div>"


def recommendation_card(rec, phys, baselines=""):
    """The recommended descriptor size (``rec``: :func:`stored_recommendation`) with its
    range, rule, caveats and other scales. A conclusive answer is the big green number; an
    inconclusive one is shown neutral, with the reason first, so that it is not read as one."""
    w, state = rec["window"], rec["state"]
    label = esc(plot.window_label(w, *phys))
    if rec["conclusive"]:
        head = (f"<div>Recommended descriptor size ({state} state)</div>"
                f"<div class='big'>{label}</div>")
    else:
        why = ("the regrouping changes gradually over the window range (no single size stands "
               "out)" if rec["gradual"] else
               "the regrouping still rises at the largest window (extend the window range)"
               if rec["still_rising"] else
               "the resampled keypoints (and models) do not agree on one window within a step")
        what = "its half-way window" if rec["gradual"] else "best so far"
        head = (f"<div><b>No conclusive descriptor size</b> ({state} state): {why}.</div>"
                f"<div class='neutral'>{what}: {label}</div>")
    sentence = rec.get("sentence", "")
    return (f"<div class='card{'' if rec['conclusive'] else ' inconclusive'}'>" + head
            + (f"<div>{esc(sentence[0].upper() + sentence[1:])}.</div>" if sentence else "")
            + _range_html(rec, phys) + _models_html(rec, phys) + _rises_html(rec, phys)
            + (f"<div>{esc(rec['rule'])}.</div>" if rec["rule"] else "")
            + (f"<div><b>Caution:</b> {esc(rec['note'])}.</div>" if rec["note"] else "")
            + baselines
            + f"<div>Evidence: the <a href='#{state}'>length-scale figure</a> of each state.</div>"
            "</div>")
