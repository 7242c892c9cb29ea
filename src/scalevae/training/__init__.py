"""Progressive training of one SI-VAE across window sizes (paper Table I).

What lives where:

- :mod:`.schedule`: :class:`TrainConfig` and the schedule it implies (steps per epoch, KL
  warm-up, :func:`epoch_cap`, :func:`training_subset`).
- :mod:`.loop`: the one epoch loop (:func:`train_window`, with an :class:`EpochHook` for where
  it runs), :func:`encode`, :func:`resolve_device` and the CPU thread rule (:func:`cpu_threads`).
- :mod:`.distributed`: data-parallel training under torchrun (DDP, sharded keypoints): the
  loop's :class:`DistributedHook`.
- :mod:`.encoding`: encoding block by block and sharded over processes.
- :mod:`.progressive`: :func:`train_progressive`, window after window with instant latents.
- :mod:`.checkpoints`: per-window checkpoints (:class:`WindowResult`, save, load, rebuild).
- :mod:`.progress`: the run's progress bar.
"""

from .checkpoints import (CHECKPOINT_FORMAT, WindowResult, checkpoint_path, load_checkpoint,
                          model_from_checkpoint, save_checkpoint)
from .distributed import (DistInfo, DistributedHook, setup_distributed, shard_bounds,
                          train_window_distributed)
from .encoding import encode_in_blocks, encode_sharded
from .loop import EpochHook, cpu_threads, encode, resolve_device, train_window
from .progress import Progress
from .progressive import train_progressive
from .schedule import (TrainConfig, epoch_cap, steps_per_epoch, training_subset, warmup_steps,
                       window_seed)

__all__ = ["CHECKPOINT_FORMAT", "DistInfo", "DistributedHook", "EpochHook", "encode_in_blocks",
           "encode_sharded",
           "setup_distributed", "shard_bounds", "train_window_distributed", "Progress",
           "TrainConfig", "WindowResult", "checkpoint_path",
           "cpu_threads", "encode", "epoch_cap", "load_checkpoint", "model_from_checkpoint",
           "resolve_device", "save_checkpoint", "steps_per_epoch", "train_progressive",
           "train_window", "training_subset", "warmup_steps", "window_seed"]
