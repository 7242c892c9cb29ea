"""Peer comparison on identical patches: scalevae's SIVAE against pyroVED 0.3's iVAE.

Run (in the peers venv, see benchmarks/README.md):

    benchmarks/.venv-peers/bin/python benchmarks/bench_peers.py [--sizes 32,64] [--write]

* Data: ``scalevae.datasets.ferroelectric_domains`` (labels a / c / wall per pixel). 4,096
  training and 1,024 held-out keypoints drawn at random inside the image; the patch of each
  keypoint is cut at window = size (no resampling), normalised with ``fit_normalization``.
  Both models see exactly these patches (pyroVED's default Bernoulli likelihood needs [0, 1], so
  it gets them min-max scaled; its reconstructions are mapped back before they are scored).
* Models: ``SIVAE(r, 2, "rotation+translation")`` trained by ``train.train_window`` with the
  default ``TrainConfig`` (batch 128, early stop on convergence); pyroVED
  ``iVAE((r, r), 2, invariances=["r", "t"])`` with its defaults, ``SVItrainer``, batch 128.
* Timing: the two alternate epoch by epoch in one process (pyroVED's epoch runs inside
  scalevae's end-of-epoch callback and is subtracted), 2 threads; the ratio is the median of the
  per-epoch ratios over the alternated pairs, leaving out the first epoch of each (start-up). pyroVED runs a capped number of epochs (its
  epochs are slow); it always gets at least as much training time as scalevae used in total.
* Quality: held-out reconstruction MSE (normalised units, over the inscribed disk that both
  rotation models reconstruct), and how well the 2 invariant latents separate the a and c
  domains at the patch centre: 5-fold cross-validated balanced accuracy of a 15-nearest-neighbour
  classifier on the held-out + training latent means (chance = 0.5).
* Peak RSS: each model alone in a fresh process (VmHWM), the 4,096 patches resident, training
  8 batches of 128, beside the baseline after imports and data.
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "2")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peer_stub"))  # torchvision stand-in for pyroVED, this process only

import numpy as np  # noqa: E402
import torch  # noqa: E402

import scalevae  # noqa: E402
from scalevae.datasets import ferroelectric_domains  # noqa: E402
from scalevae.model import SIVAE, disk_mask  # noqa: E402
from scalevae.patches import extract_patches, fit_normalization  # noqa: E402
from scalevae.training import TrainConfig, encode, train_window  # noqa: E402

N_TRAIN, N_TEST, BATCH = 4096, 1024, 128


def hwm_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return float(line.split()[1]) / 1024
    return float("nan")


def make_data(r, seed=0):
    """Patches (train, test) of window r at random keypoints, labels at their centres."""
    side = max(256, 8 * r)
    ex = ferroelectric_domains(shape=(side, side), seed=seed)
    img, labels = ex.images[0], ex.truth["labels"]
    rng = np.random.default_rng(seed)
    lo, hi = r, side - 1 - r
    pts = np.column_stack([np.zeros(N_TRAIN + N_TEST), rng.integers(lo, hi, (2, N_TRAIN + N_TEST)).T])
    pts[:, 1:] += 0.5 * (r % 2 == 0)  # even windows: half-pixel centres make exact slices
    norm = fit_normalization(img)
    p = extract_patches(img, pts, r, r, normalization=norm)
    lab = labels[np.floor(pts[:, 1]).astype(int), np.floor(pts[:, 2]).astype(int)]
    return p[:N_TRAIN], p[N_TRAIN:], lab


def class_separation(z, lab, seed=0):
    """Balanced accuracy of 15-NN on z, 5-fold CV, a (0) vs c (1) domains only."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    keep = lab < 2
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(KNeighborsClassifier(15), z[keep], lab[keep], cv=cv,
                                         scoring="balanced_accuracy")))


class Pyroved:
    """pyroVED iVAE(r, t) with its defaults, on the same patches scaled to [0, 1]."""

    def __init__(self, r, train, lo, hi):
        import pyroved as pv
        self.pv, self.lo, self.hi = pv, lo, hi
        self.model = pv.models.iVAE((r, r), latent_dim=2, invariances=["r", "t"], seed=0, device="cpu")
        self.trainer = pv.trainers.SVItrainer(self.model, device="cpu")
        x = torch.from_numpy(self.scale(train))
        self.loader = pv.utils.init_dataloader(x, batch_size=BATCH)

    def scale(self, p):
        return np.clip((p - self.lo) / (self.hi - self.lo), 0, 1).astype(np.float32)

    def epoch(self):
        self.trainer.step(self.loader)

    def latents(self, p):
        z_loc, _ = self.model.encode(torch.from_numpy(self.scale(p)), batch_size=1024)
        return z_loc

    def reconstruct(self, p):
        """Decode each patch with its own encoded angle and shift (pyroVED decodes one angle for all)."""
        from pyroved.utils import transform_coordinates
        z = self.latents(p)
        phi, dx, _, zc = self.model.split_latent(z)
        dx = (dx * self.model.t_prior).unsqueeze(1)
        grid = self.model.grid.expand(len(p), *self.model.grid.shape)
        with torch.no_grad():
            loc = self.model.decoder(transform_coordinates(grid, phi, dx), zc)
        return loc.view(len(p), *p.shape[1:]).numpy() * (self.hi - self.lo) + self.lo


def disk_mse(recon, x, r):
    m = disk_mask(r).numpy()
    return float((((recon - x) ** 2)[:, m]).mean())


def ours_quality(model, train, test, lab):
    z = np.concatenate([encode(model, torch.from_numpy(a))["z_mean"] for a in (train, test)])
    with torch.no_grad():
        post = model.encode(torch.from_numpy(test))
        recon = model.decode(post["z_mean"], post["angle"], post["shift"]).numpy()
    return disk_mse(recon, test, model.patch_size), class_separation(z, np.r_[lab[:N_TRAIN], lab[N_TRAIN:]])


def peer_quality(peer, train, test, lab, r):
    z = np.concatenate([peer.latents(a)[:, -2:].numpy() for a in (train, test)])
    return disk_mse(peer.reconstruct(test), test, r), class_separation(z, lab)


def compare(r, peer_epochs, ours_epochs=None):
    torch.manual_seed(0)
    train, test, lab = make_data(r)
    ours = SIVAE(r, 2, "rotation+translation")
    peer = Pyroved(r, train, float(train.min()), float(train.max()))
    cfg = TrainConfig() if ours_epochs is None else TrainConfig(epochs=ours_epochs)
    t_ours, t_peer, mark = [], [], [time.perf_counter(), 0.0]
    loads = [os.getloadavg()[0]]

    def after_ours_epoch(epoch, loss):
        now = time.perf_counter()
        t_ours.append(now - mark[0])
        print(f"r={r} scalevae epoch {epoch}: {t_ours[-1]:.2f} s loss {loss:.1f}", file=sys.stderr, flush=True)
        if len(t_peer) < peer_epochs:
            t0 = time.perf_counter()
            peer.epoch()
            t_peer.append(time.perf_counter() - t0)
            print(f"r={r} pyroVED epoch {len(t_peer)}: {t_peer[-1]:.2f} s", file=sys.stderr, flush=True)
            loads.append(os.getloadavg()[0])
        mark[0] = time.perf_counter()

    gen = torch.Generator().manual_seed(0)
    losses, _ = train_window(ours, torch.from_numpy(train), cfg, gen, first=True, progress=after_ours_epoch)
    while len(t_peer) < peer_epochs:  # scalevae converged first: pyroVED finishes its epochs alone
        t0 = time.perf_counter()
        peer.epoch()
        t_peer.append(time.perf_counter() - t0)
    # the first epoch of each carries one-off start-up costs (allocator, oneDNN kernels): left out
    pairs = min(len(t_ours), len(t_peer))
    first = 1 if pairs > 1 else 0
    ratios = [t_peer[k] / t_ours[k] for k in range(first, pairs)]
    steady_ours = t_ours[1:] if len(t_ours) > 1 else t_ours
    steady_peer = t_peer[1:] if len(t_peer) > 1 else t_peer
    q_ours, q_peer = ours_quality(ours, train, test, lab), peer_quality(peer, train, test, lab, r)
    return {
        "size": r, "ours_epochs": len(t_ours), "ours_epoch_s": statistics.median(steady_ours),
        "ours_total_s": sum(t_ours), "peer_epochs": len(t_peer),
        "peer_epoch_s": statistics.median(steady_peer), "peer_total_s": sum(t_peer),
        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "pairs": pairs - first, "ours_mse": q_ours[0], "ours_sep": q_ours[1], "peer_mse": q_peer[0],
        "peer_sep": q_peer[1], "load": statistics.median(loads),
        "test_var": float(test[:, disk_mask(r).numpy()].var()),
    }


def rss_child(method, r):
    """Peak RSS (MiB) of one model training one epoch on the 4,096 patches, in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--rss-only", method, str(r)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_only(method, r):
    train, test, lab = make_data(r)
    base = hwm_mib()
    sub = train[:1024]  # all 4,096 patches stay resident; 8 batches of 128 set the peak
    if method == "scalevae":
        m = SIVAE(r, 2, "rotation+translation")
        train_window(m, torch.from_numpy(sub), TrainConfig(epochs=1, min_epochs=1),
                     torch.Generator().manual_seed(0), first=True)
    else:
        Pyroved(r, sub, float(train.min()), float(train.max())).epoch()
    print(json.dumps({"base": base, "peak": hwm_mib()}))


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32,64")
    ap.add_argument("--peer-epochs", default="32:3,64:1", help="pyroVED epochs per size")
    ap.add_argument("--ours-epochs", type=int, help="cap on scalevae's epochs (default: TrainConfig's 30, "
                    "with its early stop)")
    ap.add_argument("--write", action="store_true", help="write benchmarks/RESULTS_peers.md")
    ap.add_argument("--rss-only", nargs=2, metavar=("METHOD", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if args.rss_only:
        return rss_only(args.rss_only[0], int(args.rss_only[1]))
    import pyro
    import pyroved
    peer_epochs = dict(tuple(int(v) for v in kv.split(":")) for kv in args.peer_epochs.split(","))
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for r in sizes:  # comparisons first, each printed as soon as it is done
        rows.append(compare(r, peer_epochs.get(r, 2), args.ours_epochs))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    mem = {}
    for r in sizes:
        for m in ("scalevae", "pyroved"):
            mem[(m, r)] = rss_child(m, r)
            print(json.dumps({"rss": m, "size": r, **mem[(m, r)]}), file=sys.stderr, flush=True)
    lines = [
        "# Peer comparison: scalevae SIVAE vs pyroVED iVAE on identical patches",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}; {torch.get_num_threads()} torch threads; "
        + (f"load average {max(r['load'] for r in rows):.1f} at most (see the table): the cores were "
           "not oversubscribed; the ratios are alternated epoch by epoch"
           if max(r["load"] for r in rows) <= os.cpu_count() else
           "shared with other jobs (load average in the table: above the core count, so absolute "
           "seconds are inflated; the ratios are alternated epoch by epoch)"),
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, pyroVED "
        f"{pyroved.__version__}, pyro-ppl {pyro.__version__}, numpy {np.__version__}, scalevae {scalevae.__version__}",
        f"- command: `benchmarks/.venv-peers/bin/python benchmarks/bench_peers.py --sizes {args.sizes} "
        f"--peer-epochs {args.peer_epochs}"
        f"{f' --ours-epochs {args.ours_epochs}' if args.ours_epochs else ''}{' --write' if args.write else ''}`",
        f"- data: {N_TRAIN} training + {N_TEST} held-out patches of ferroelectric_domains (a / c / wall "
        "truth), window = size, batch 128; rotation + translation invariance, 2 latents, both models",
        "",
        "| size | model | epochs run | median s / epoch | total train s | peak RSS MiB (import baseline) "
        "| held-out MSE (disk) | a/c separation (bal. acc.) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        r = row["size"]
        mo, mp = mem[("scalevae", r)], mem[("pyroved", r)]
        lines.append(f"| {r} | scalevae SIVAE | {row['ours_epochs']} | {row['ours_epoch_s']:.3f} | "
                     f"{row['ours_total_s']:.1f} | {mo['peak']:.0f} ({mo['base']:.0f}) | "
                     f"{row['ours_mse']:.3f} | {row['ours_sep']:.3f} |")
        lines.append(f"| {r} | pyroVED iVAE | {row['peer_epochs']} | {row['peer_epoch_s']:.3f} | "
                     f"{row['peer_total_s']:.1f} | {mp['peak']:.0f} ({mp['base']:.0f}) | "
                     f"{row['peer_mse']:.3f} | {row['peer_sep']:.3f} |")
    lines += ["", "| size | per-epoch speed-up (median of alternated pairs) | min .. max | pairs | "
              "held-out patch variance (MSE of predicting 0) | load average |",
              "| ---: | ---: | --- | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['size']} | {row['ratio_median']:.1f}x | {row['ratio_min']:.1f} .. "
                     f"{row['ratio_max']:.1f} | {row['pairs']} | {row['test_var']:.3f} | {row['load']:.1f} |")
    if any(row["pairs"] < 2 for row in rows):
        lines += ["", "Rows with fewer than 2 alternated pairs compare first epochs (start-up "
                  "included on both sides). A model whose held-out MSE is near the patch variance "
                  "has not learned yet in the epochs it ran."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (HERE / "RESULTS_peers.md").write_text(text)


if __name__ == "__main__":
    main()
