"""The progress bar of a run: one step per window, with the epoch and loss of the window in training."""


class Progress:
    """A tqdm bar over windows showing window, epoch and loss; silent when ``quiet``.

    The callbacks :func:`~scalevae.training.train_progressive` calls as it goes.

    Examples
    --------
    >>> with Progress([8, 12], quiet=True) as progress:
    ...     progress.start_window(0, 8); progress.end_window(0, 8)
    """

    def __init__(self, windows, quiet):
        self.windows, self.quiet, self.bar = windows, quiet, None

    def __enter__(self):
        if not self.quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(self.windows), unit="window", desc="SI-VAE")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def start_window(self, i, w):
        if self.bar is not None:
            self.bar.set_description(f"window {w} px")

    def epoch(self, i, w, epoch, loss):
        if self.bar is not None:
            self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4g}")

    def end_window(self, i, w):
        if self.bar is not None:
            self.bar.update(1)

    def skip_window(self, i, w):
        if self.bar is not None:
            self.bar.set_postfix_str(f"window {w} px loaded from checkpoint")
            self.bar.update(1)
