"""Regenerate the report screenshots shown in the README (one per data type).

Each picture is a part of a real ``report.html``: the recommendation card and chosen sections
of the final state, cut from the report as it is and rendered by headless Chromium. Run from the
repository root after the runs exist (the README's commands)::

    scalevae run ../shared/data/real/PTO_Funakubo0004.h5 --channel AmplitudeRetrace \\
        --keypoints grid:4 --windows 8:64:4 --out runs/pto
    scalevae demo graphene --out runs/demo-graphene
    scalevae demo library --out runs/demo-library
    .venv/bin/python docs/make_screenshots.py

``docs/report_explorer.png`` is the report's interactive explorer of ``runs/pto``, driven by
playwright (through ``window.scalevaeExplorer``: the recommended window, a box in latent space,
one keypoint clicked); ``--explorer-only [RUN_DIR]`` redraws only that one.

Needs Debian's ``chromium`` (``apt-get install chromium``) and, for the explorer, playwright
(the ``test`` extra; it drives the system chromium, no browser download).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

#: picture -> (run folder, keep the recommendation card, final-state sections to keep)
SHOTS = {
    "report_single_image.png": ("runs/pto", True,
                                ["Latent distributions and their peaks (candidate "
                                 "structural elements)", "Latent representations",
                                 "Length scales"]),
    "report_movie.png": ("runs/demo-graphene", False, ["Unusual keypoints", "Stack statistics"]),
    "report_library.png": ("runs/demo-library", True, ["Stack statistics", "Length scales"]),
}
WIDTH = 1220
EXPLORER_RUN = "runs/pto"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def excerpt(report: str, card: bool, sections: list[str]) -> str:
    """The report's head (styles), optionally its recommendation card, and the named ``<h3>``
    sections of the final state, as one page."""
    head = report[:report.index("<body>")]
    final = report[report.index("<h2 id='final'>"):report.index("<h2 id='instant'>")]
    parts = re.split(r"(?=<h3>)", final)
    keep = {p[4:p.index("</h3>")]: p for p in parts if p.startswith("<h3>")}
    missing = [s for s in sections if s not in keep]
    if missing:
        raise SystemExit(f"sections not in the report: {missing}; it has {list(keep)}")
    body = []
    if card:
        start = report.index("<div class='card'>")
        body.append(report[start:report.index("\n", start)])
    body += [keep[s] for s in sections]
    return head + "<body><main>" + "\n".join(body) + "</main></body></html>"


def trim(path: Path) -> None:
    """Cut the empty page below the content (rows equal to the background colour)."""
    img = np.asarray(Image.open(path).convert("RGB"))
    rows = np.flatnonzero((img != img[-1, 0]).any(axis=(1, 2)))
    Image.fromarray(img[:rows.max() + 12]).save(path, optimize=True)


def explorer_shot(chromium: str, run: Path, out: Path) -> None:
    """The explorer of ``run``'s report as a user leaves it: the recommended window, a box
    drawn in latent space (its keypoints highlighted on the image) and one keypoint clicked."""
    from playwright.sync_api import sync_playwright

    report = run / "report.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1400})
        page.goto(report.resolve().as_uri())
        page.wait_for_function("window.scalevaeExplorer && scalevaeExplorer.ready()",
                               timeout=60000)
        data = page.evaluate("scalevaeExplorer.data")
        rec = re.search(r"<div class='big'>(\d+) px", report.read_text(encoding="utf-8"))
        window = int(rec.group(1)) if rec else data["windows"][-1]
        page.evaluate(f"scalevaeExplorer.setWindow({window})")
        box = json.dumps(_box(page))
        page.evaluate(f"scalevaeExplorer.selectLatentBox(...{box})")
        stored = data["patch_points"]
        page.evaluate(f"scalevaeExplorer.selectPoint({stored[len(stored) // 3]})")
        page.evaluate(f"scalevaeExplorer.selectLatentBox(...{box})")  # keep the box highlighted
        page.wait_for_timeout(500)
        top = page.locator("#explorer").bounding_box()
        bottom = page.locator("#sv-patches").bounding_box()
        page.screenshot(path=str(out), clip={"x": 0, "y": top["y"] - 8, "width": WIDTH,
                                             "height": bottom["y"] + bottom["height"] - top["y"]
                                             + 16}, full_page=True)
        browser.close()


def _box(page):
    """A box around the densest quarter of the current window's latent scatter."""
    z = page.evaluate("""() => { const d = Bokeh.documents[0].get_model_by_name('sv_points').data;
                                 return [Array.from(d.z1), Array.from(d.z2)]; }""")
    z1, z2 = np.asarray(z[0]), np.asarray(z[1])
    return [*np.quantile(z1, [0.05, 0.45]), *np.quantile(z2, [0.05, 0.6])]


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    if "--explorer-only" in sys.argv:
        args = [a for a in sys.argv[1:] if a != "--explorer-only"]
        run = Path(args[0]) if args else ROOT / EXPLORER_RUN
        explorer_shot(chromium, run, ROOT / "docs" / "report_explorer.png")
        print(f"docs/report_explorer.png <- {run}/report.html")
        return 0
    explorer_shot(chromium, ROOT / EXPLORER_RUN, ROOT / "docs" / "report_explorer.png")
    print(f"docs/report_explorer.png <- {EXPLORER_RUN}/report.html")
    for name, (run, card, sections) in SHOTS.items():
        report = (ROOT / run / "report.html").read_text()
        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / "page.html"
            page.write_text(excerpt(report, card, sections))
            shot = Path(tmp) / name
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                            "--hide-scrollbars", f"--window-size={WIDTH},6000",
                            f"--screenshot={shot}", page.as_uri()],
                           check=True, capture_output=True, timeout=120)
            trim(shot)
            shutil.copy(shot, ROOT / "docs" / name)
        print(f"docs/{name} <- {run}/report.html: {', '.join(sections)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
