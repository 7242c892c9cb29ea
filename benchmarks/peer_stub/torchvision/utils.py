"""``make_grid`` as torchvision defines it (tiling only), enough for pyroVED's plots."""

import math

import torch


def make_grid(tensor, nrow=8, padding=2, pad_value=0.0, **_):
    """Tile a batch (n, c, h, w) into one (c, H, W) image, ``nrow`` images per row."""
    if isinstance(tensor, (list, tuple)):
        tensor = torch.stack(list(tensor))
    if tensor.dim() == 3:
        tensor = tensor[:, None]
    n, c, h, w = tensor.shape
    if c == 1:
        tensor, c = tensor.expand(n, 3, h, w), 3
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    hp, wp = h + padding, w + padding
    grid = tensor.new_full((c, rows * hp + padding, cols * wp + padding), pad_value)
    for k in range(n):
        y, x = divmod(k, cols)
        grid[:, y * hp + padding:y * hp + padding + h, x * wp + padding:x * wp + padding + w] = tensor[k]
    return grid
