"""The embedded default: a small DiracNet trained on scikit-learn's bundled 8x8 digits, and a held-out split.

`digits_diracnet.pt7` is in the original `train.py` layout (`{'params', 'epoch', 'optimizer'}`), produced by
`scripts/train_digits.py`; `digits_holdout.npz` holds the 360 held-out images (uint8, 0..16) and labels.
Images are scaled to [0, 1], upsampled to 32x32 (bilinear), repeated to 3 channels and normalized.
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
