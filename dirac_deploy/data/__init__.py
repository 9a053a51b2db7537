"""The embedded models and their data.

- The default: a small DiracNet-10 trained on scikit-learn's bundled 8x8 digits. `digits_diracnet.pt7` is in
  the original `train.py` layout (`{'params', 'epoch', 'optimizer'}`) plus the optional `normalization`
  record, produced by `scripts/train_digits.py`; `digits_holdout.npz` holds the 360 held-out images (uint8,
  0..16) and labels, `digits_calib.npz` 128 training images for quantization calibration; each also holds
  `x`, the same images preprocessed, so `quantize --calib`/`--eval` can be given the files themselves. Images are scaled
  to [0, 1], upsampled to 32x32 (bilinear), repeated to 3 channels and normalized.
- For low-precision checks: a wide DiracNet-16-2 (32/64/128 channels) on corrupted digits
  (`scripts/train_noisy_digits.py`): `noisy_diracnet.pt7`, `noisy_data.npz` (colour uint8 32x32 images).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DIGITS_MEAN = (0.3054,) * 3  # train-split mean after scaling and upsampling (printed by train_digits.py)
DIGITS_STD = (0.3237,) * 3
INPUT_SIZE = 32


def embedded_checkpoint() -> Path:
    return Path(str(resources.files(__package__) / "digits_diracnet.pt7"))


def holdout_path() -> Path:
    return Path(str(resources.files(__package__) / "digits_holdout.npz"))


def preprocess(images: np.ndarray, mean=DIGITS_MEAN, std=DIGITS_STD) -> torch.Tensor:
    """uint8 [N, 8, 8] digits (0..16) -> float32 [N, 3, 32, 32] network input."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


def load_holdout() -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs [360, 3, 32, 32], labels [360]) of the held-out split."""
    with np.load(holdout_path()) as d:
        return preprocess(d["images"]), torch.as_tensor(d["labels"].astype(np.int64))


def load_calibration() -> torch.Tensor:
    """128 training-split images [128, 3, 32, 32] for quantization calibration (disjoint from the held-out split)."""
    with np.load(Path(str(resources.files(__package__) / "digits_calib.npz"))) as d:
        return preprocess(d["images"])


def noisy_checkpoint() -> Path:
    """The second embedded model (scripts/train_noisy_digits.py): DiracNet-16-2 on corrupted digits."""
    return Path(str(resources.files(__package__) / "noisy_diracnet.pt7"))


def load_noisy(split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 [N, 32, 32, 3] images and labels (None for the calibration split) of the corrupted digits."""
    with np.load(Path(str(resources.files(__package__) / "noisy_data.npz"))) as d:
        if split == "calib":
            return d["calib_images"], None
        return d["holdout_images"], d["holdout_labels"].astype(np.int64)


EMBEDDED = {"digits": embedded_checkpoint, "noisy": noisy_checkpoint}
