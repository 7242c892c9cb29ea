"""Training cost vs patch size: seconds per optimisation step of the default model (batch 128).

Times forward + loss + backward + Adam step of ``scalevae.model.SIVAE`` (rotation invariance,
two latents) on random patches, for each patch size, on one thread and on torch's default
thread count (``scalevae.run`` uses one thread up to 16 px, the default above). The number of steps per run does
not depend on the patch size (same keypoints, same batch), so the ratio of step times is the
ratio of training times.

    PYTHONPATH=src python validation/scales_cost.py [--sizes 8 12 16 20 24 32] [--steps 30]
"""

from __future__ import annotations

import argparse
import time


def step_seconds(r, steps, threads):
    import torch

    from scalevae.model import SIVAE

    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = SIVAE(r, 2, "rotation")
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        x = torch.rand(128, r, r)
        times = []
        for i in range(steps + 3):
            t = time.perf_counter()
            out = model(x)
            loss = model.loss(x, out)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 3:  # warm-up steps left out
                times.append(time.perf_counter() - t)
        times.sort()
        return times[len(times) // 2]  # median: robust to other jobs on a shared machine
    finally:
        torch.set_num_threads(before)


def main(argv=None):
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 12, 16, 20, 24, 32])
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args(argv)
    default_threads = torch.get_num_threads()
    base = {}
    print("| patch (px) | threads | s / step | x patch 8, 1 thread |\n| --- | --- | --- | --- |")
    for r in args.sizes:
        for th in sorted({1, default_threads}):
            s = step_seconds(r, args.steps, th)
            base.setdefault("b", s)
            print(f"| {r} | {th} | {s:.4f} | {s / base['b']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
