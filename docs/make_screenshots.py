"""Regenerate the report screenshots shown in the README (one per data type).

Each picture is a part of a real ``report.html``: the recommendation card and chosen sections
of the final state, cut from the report as it is and rendered by headless Chromium. Run from the
repository root after the runs exist (the README's commands)::

    scalevae run ../shared/data/real/PTO_Funakubo0004.h5 --channel AmplitudeRetrace \\
        --keypoints grid:4 --windows 8:64:4 --out runs/pto
    scalevae demo graphene --out runs/demo-graphene
    scalevae demo library --out runs/demo-library
    .venv/bin/python docs/make_screenshots.py

Needs Debian's ``chromium`` (``apt-get install chromium``).
"""

from __future__ import annotations

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
                                ["Latent distributions", "Latent representations",
                                 "Length scales"]),
    "report_movie.png": ("runs/demo-graphene", False, ["Unusual keypoints", "Stack statistics"]),
    "report_library.png": ("runs/demo-library", True, ["Stack statistics", "Length scales"]),
}
WIDTH = 1220


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


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
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
