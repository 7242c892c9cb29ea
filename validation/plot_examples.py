"""Draw the four synthetic examples with their ground truth: writes docs/examples.png.

Run from the repository root: ``python validation/plot_examples.py [OUT.png]``.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scalevae.datasets import load_example  # noqa: E402


def _show(ax, img, title, cmap="gray", pct=(1, 99)):
    lo, hi = np.percentile(img, pct)
    ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def main(out):
    fig, axes = plt.subplots(4, 4, figsize=(14, 14.5))

    ex = load_example("domains")
    _show(axes[0, 0], ex.images[0], "domains: PFM amplitude")
    axes[0, 1].imshow(ex.truth["labels"], cmap="viridis", interpolation="nearest")
    n = ex.truth["needles"]
    axes[0, 1].plot(n[:, 1], n[:, 0], "r^", ms=4)
    axes[0, 1].set_title("truth: a (0) / c (1) / wall (2), needle tips", fontsize=9)
    _show(axes[0, 2], ex.truth["polarization"], "truth: c+ / a / c- (c/c walls between)",
          cmap="coolwarm", pct=(0, 100))
    _show(axes[0, 3], ex.images[0][:96, :96], "domains: zoom 96 px (scan lines along x)")

    ex = load_example("graphene")
    tr, kp = ex.truth, ex.keypoints
    for ax, f in zip(axes[1, :3], (0, ex.images.shape[0] // 2, ex.images.shape[0] - 1)):
        _show(ax, ex.images[f], f"graphene HAADF frame {f} ({tr['defect_count'][f]} defects)",
              pct=(0.5, 99.5))
        marks = {"vacancy": "rx", "stone_wales": "co", "si": "y+"}
        for _, y, x, kind in (d for d in tr["defects"] if d[0] == f):
            ax.plot(x, y, marks[kind], ms=5, mfc="none")
    f = ex.images.shape[0] - 1
    m = kp[:, 0] == f
    ax = axes[1, 3]
    d = np.minimum(tr["distance_to_defect"][m], 60)
    sc = ax.scatter(kp[m, 2], kp[m, 1], c=d, s=12, cmap="magma")
    ax.scatter(kp[m, 2][tr["element"][m] == 14], kp[m, 1][tr["element"][m] == 14],
               s=60, facecolors="none", edgecolors="c")
    ax.set_xlim(-0.5, ex.images.shape[2] - 0.5)
    ax.set_ylim(ex.images.shape[1] - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"truth frame {f}: distance to defect (px), Si circled", fontsize=9)
    fig.colorbar(sc, ax=ax, fraction=0.046)

    ex = load_example("library")
    tr = ex.truth
    for ax, f in zip(axes[2, :3], (0, len(ex.control) // 2, len(ex.control) - 1)):
        _show(ax, ex.images[f], f"library x = {ex.control[f]:.2f} (height, nm)", cmap="afmhot")
    ax = axes[2, 3]
    ax.plot(tr["composition"], tr["grain_size"], "o-", label="measured from labels")
    ax.plot(tr["composition"], tr["target_grain_size"], "--", label="target")
    ax.set_xlabel("composition x")
    ax.set_ylabel("mean grain diameter (px)")
    ax.legend(fontsize=8)
    ax.set_title("truth: grain size vs composition", fontsize=9)

    ex = load_example("twoscale")
    tr = ex.truth
    wc = tr["critical_window"]
    _show(axes[3, 0], ex.images[0], f"twoscale: left / right halves, W = {wc} px")
    ax = axes[3, 1]
    ax.imshow(tr["clean"], cmap="gray", interpolation="nearest")
    v, r = tr["voids"], tr["void_radius"]
    for y0, x0 in v:
        ax.add_patch(plt.Circle((x0, y0), r, fill=False, ec="r", lw=0.8))
    ax.axvline(ex.images.shape[2] / 2 - 0.5, color="y")
    for y0, x0 in ((10, 10), (10, ex.images.shape[2] - 10 - wc)):
        ax.add_patch(plt.Circle((x0 + wc / 2, y0 + wc / 2), wc / 2, fill=False, ec="c"))
    ax.set_title("truth: voids; cyan disk = critical window", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    _show(axes[3, 2], ex.images[0][:64, :64], "twoscale: zoom (64 px), fine texture")
    ax = axes[3, 3]
    img = ex.images[0].astype(float)
    nx = img.shape[1]
    c = np.pad(img, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    ws = np.arange(6, 61, 2)
    ratio = []
    for w in ws:
        means = []
        for x0, x1 in ((0, nx // 2), (nx // 2, nx)):
            y, x = np.meshgrid(np.arange(0, img.shape[0] - w + 1, 2), np.arange(x0, x1 - w + 1, 2),
                               indexing="ij")
            means.append((c[y + w, x + w] - c[y, x + w] - c[y + w, x] + c[y, x]) / w**2)
        ratio.append(means[1].var() / means[0].var())
    ax.semilogy(ws, ratio, "o-")
    ax.axvline(wc, color="r", ls="--", label="critical window")
    ax.axhline(1, color="k", lw=0.5)
    ax.set_xlabel("window w (px)")
    ax.set_ylabel("var(patch mean) right / left")
    ax.legend(fontsize=8)
    ax.set_title("regions differ only above W", fontsize=9)

    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    return out


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "docs/examples.png"))
