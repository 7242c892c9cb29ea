"""The answer a run stores: the recommended window read from the result (checked against its
other state), and with ``--repeats`` the other models started beside the first and their
answers pooled with its.

:func:`recommendation` is what the result's attributes hold; :func:`pool_repeats` adds the
pooled answer and each model's own (:mod:`scalevae.analysis.recommend` is the rule).
"""

from __future__ import annotations

import json
import sys
import time
import warnings

from .analysis.recommend import recommendation_attrs
from .errors import ScaleVAEError
from .results import RunRecord, build_result


def start_repeats(plan, patches, run_dir, resume, repeats, threads):
    """Start the models of seeds after the plan's in worker processes, on the patches of
    every window cut here once (the first model reuses them), each checkpointed in its own
    folder (:func:`scalevae.training.ensemble.seed_checkpoints`); None for one model."""
    if repeats <= 1:
        return None
    from .training.ensemble import start_seeds

    if patches.streaming:
        raise ScaleVAEError(
            f"repeats > 1 keeps every window's patches in memory, and {patches.n_points} "
            f"keypoints x {len(plan.windows)} windows do not fit in "
            f"{patches.cache_bytes // 2**20} MiB; use fewer keypoints (a coarser grid) or "
            "fewer windows, or run each seed as its own run")
    seeds = [plan.seed + k for k in range(1, repeats)]
    return start_seeds(patches, plan.windows, plan.train, seeds,
                       dict(patch_size=plan.patch_size, latent_dim=plan.latent_dim,
                            invariance=plan.invariance),
                       workers=len(seeds), threads=threads,
                       checkpoints=run_dir.checkpoints if run_dir is not None else None,
                       fingerprint=plan.fingerprint, resume=resume)


def answer_evidence(ds):
    """The regrouping evidence of the state the recommendation reads and of the other state
    (its check); (None, None) below 3 windows."""
    if ds.sizes["window"] < 3:
        return None, None
    from .analysis._common import scales_state
    from .analysis.recommend import other_state
    from .analysis.scales import regrouping_evidence

    other = other_state(ds, scales_state(ds))
    return regrouping_evidence(ds), regrouping_evidence(ds, other) if other else None


def pool_repeats(ds, plan, stack, others, quiet, timings, evidence=None, check=None) -> None:
    """Wait for the other models (:func:`start_repeats`) and store the recommendation pooled
    over every model's resampled answers (:func:`scalevae.analysis.recommend.recommend`);
    ``evidence``, ``check``: the first model's regrouping evidence of both states, when
    computed already."""
    from .analysis.recommend import recommend

    t = time.perf_counter()
    if not quiet:
        print(f"waiting for the other {len(others.seeds)} model(s) (seeds "
              f"{', '.join(map(str, others.seeds))})", file=sys.stderr, flush=True)
    results = [ds]
    for other in others.results():
        instant = [res.instant for res in other["results"]]
        results.append(build_result(RunRecord(
            plan.windows, plan.points, instant, instant,
            [res.losses for res in other["results"]], [res.kl for res in other["results"]],
            attrs=dict(ds.attrs), control=stack.control, control_name=stack.control_name)))
    if ds.sizes["window"] >= 3:
        from .analysis.scales import regrouping_evidence

        if evidence is None:
            evidence, check = answer_evidence(ds)
        # the other models keep their instant state only (their "final" is a copy of it): the
        # check of the other state reads the first model's
        evidence = [evidence] + [regrouping_evidence(r) for r in results[1:]]
        rec = recommend(results, evidence=evidence, check_evidence=check)
        pooled = recommendation_attrs(rec)
        # each model's own answer beside the pooled one: the spread over seeds, in the open
        alone = [recommend(r, evidence=[ev], check_state=k == 0, check_evidence=check)
                 for k, (r, ev) in enumerate(zip(results, evidence))]
        pooled["recommended_window_per_model"] = json.dumps(
            [{"seed": plan.seed + k, "window": int(a["recommended_window"]),
              "interval": [int(a["interval_low"]), int(a["interval_high"])],
              "conclusive": bool(a["conclusive"]),
              "share": round(float(a["conclusive_share"]), 4)} for k, a in enumerate(alone)])
        pooled["recommended_window_range"] = pooled["recommended_window_interval"]
        pooled["recommended_window_note"] = rec.attrs.get("note", "")  # the pooled caveat
        ds.attrs.update(pooled)
    ds.attrs["recommended_window_repeats"] = len(results)
    timings["repeats_wait"] = time.perf_counter() - t


def recommended_scales(ds, evidence=None, check=None):
    """Length scales of the state the recommendation reads (:data:`config.SCALES_STATE` for a
    new result), checked against the other state, from the regrouping ``evidence`` and
    ``check`` of the two when given; None below 3 windows: too few to recommend one."""
    if ds.sizes["window"] < 3:
        return None
    from .analysis import length_scales

    # the state: analysis._common.scales_state
    return length_scales(ds, evidence=evidence, check_evidence=check)


def recommendation(scales) -> dict:
    """The recommended descriptor size and every length scale, stored with the result."""
    if scales is None:
        return {}
    rises = [{"onset": int(o), "middle": int(m), "end": int(e), "strength": round(float(s), 3)}
             for o, m, e, s in zip(scales["rise_onset"].values, scales["rise_middle"].values,
                                   scales["rise_end"].values, scales["rise_strength"].values)]
    # pipelines read the window and `recommended_window_conclusive` (from the bootstrap
    # distribution: analysis.recommend); `_significant`, `length_scales_still_rising` and
    # `length_scales_gradual` are superseded by it and kept for older readers
    return {**recommendation_attrs(scales),
            "recommended_window": int(scales["recommended_window"]),
            "recommended_window_state": str(scales.attrs.get("state", "final")),
            # = recommended_window_interval (superseded name): the windows holding 90 %
            "recommended_window_range": [int(scales["recommended_low"]),
                                         int(scales["recommended_high"])],
            "recommended_window_significant": int(bool(scales["significant"])),
            "recommended_window_conclusive": int(bool(scales["conclusive"])),
            "length_scales_still_rising": int(bool(scales["still_rising"])),
            # the recommended rise spans > 4x in window: no single size, range-dependent
            "length_scales_gradual": int(bool(scales["gradual"])),
            # every rise of the regrouping, strongest first (JSON text: netCDF-safe)
            "length_scales": json.dumps(rises),
            "recommended_window_rule": scales.attrs.get("rule", ""),
            "recommended_window_note": scales.attrs.get("note", ""),
            # the whole length-scale Dataset (xarray's to_dict, as JSON text): the report
            # draws this state's curves from it instead of computing them again
            "length_scale_curves": json.dumps(scales.to_dict(data="list", encoding=False),
                                              default=lambda v: v.item())}


def flag_epoch_cap(ds, trained, cfg) -> None:
    """Name the windows that trained to the epoch cap, in the result and a warning."""
    capped = [int(res.window) for res in trained if res.at_cap]
    # a netCDF attribute cannot be an empty list: JSON text, "[]" when every window converged
    ds.attrs["windows_at_epoch_cap"] = json.dumps(capped)
    if capped:
        warnings.warn(f"training of window(s) {', '.join(map(str, capped))} px ran all "
                      f"{cfg.epochs} epochs of the cap without converging; their latents may "
                      f"still change with more training (epochs={2 * cfg.epochs}, or "
                      f"--epochs {2 * cfg.epochs})", stacklevel=6)
