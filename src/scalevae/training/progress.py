"""The progress of a run: a bar over the windows on a terminal or in a notebook, one plain line
per window in a log (stderr that is no terminal), nothing when quiet."""

from __future__ import annotations

import sys
import time


def _bar_fits(stream) -> bool:
    """A redrawn bar fits a terminal or a notebook; in a log file it floods every line."""
    return "ipykernel" in sys.modules or bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Progress over windows showing window, epoch and loss; silent when ``quiet``.

    The callbacks :func:`~scalevae.training.train_progressive` calls as it goes. On a terminal
    (or in a notebook) a tqdm bar; otherwise one line per finished window on ``stream``.

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()
    >>> with Progress([8, 12], quiet=False, stream=log) as progress:
    ...     progress.start_window(0, 8); progress.epoch(0, 8, 5, 1.5); progress.end_window(0, 8)
    >>> log.getvalue().startswith("scalevae: window 8 px (1 of 2): 5 epochs, loss 1.5")
    True
    """

    def __init__(self, windows, quiet, stream=None):
        self.windows, self.quiet, self.bar = windows, quiet, None
        self.stream = sys.stderr if stream is None else stream
        self.lines = not quiet and not _bar_fits(self.stream)
        self._epoch, self._loss, self._t0 = 0, float("nan"), 0.0

    def __enter__(self):
        if not self.quiet and not self.lines:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(self.windows), unit="window", desc="SI-VAE",
                            file=self.stream)
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def _line(self, i, w, text):
        print(f"scalevae: window {w} px ({i + 1} of {len(self.windows)}): {text}",
              file=self.stream, flush=True)

    def start_window(self, i, w):
        self._epoch, self._loss, self._t0 = 0, float("nan"), time.perf_counter()
        if self.bar is not None:
            self.bar.set_description(f"window {w} px")

    def epoch(self, i, w, epoch, loss):
        self._epoch, self._loss = epoch, loss
        if self.bar is not None:
            self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4g}")

    def end_window(self, i, w):
        if self.bar is not None:
            self.bar.update(1)
        elif self.lines:
            self._line(i, w, f"{self._epoch} epochs, loss {self._loss:.4g} "
                             f"({time.perf_counter() - self._t0:.1f} s)")

    def skip_window(self, i, w):
        if self.bar is not None:
            self.bar.set_postfix_str(f"window {w} px loaded from checkpoint")
            self.bar.update(1)
        elif self.lines:
            self._line(i, w, "loaded from its checkpoint")
