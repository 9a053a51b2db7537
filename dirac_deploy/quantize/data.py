"""Calibration and evaluation data for low-precision artifacts, preprocessed the way the artifact records.

A data source is one of:
- `embedded`: the embedded data of an embedded model (recognized by its source checkpoint's sha256): the
  digits model's calibration and held-out splits, or the corrupted-digits model's;
- `random` or `random:N`: N seeded standard-normal images (for random-weight nets; no labels);
- a `.npz` / `.npy` file: float32 [N, C, H, W] already preprocessed, or uint8 images [N, H, W, C] /
  [N, C, H, W] in 0..255 that are scaled, resized to the input size and normalized with the artifact's mean
  and std; labels from the `.npz` key `labels`, `y` or `holdout_labels` when present;
- a directory of images (ImageFolder layout: one subdirectory per class, sorted names are labels 0..K-1;
  needs Pillow).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OptionError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")


@dataclass
class Dataset:
    x: np.ndarray  # float32 [N, C, H, W], the network's input
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.x)


def _normalize(images: np.ndarray, input_shape, mean, std, where: str) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    c, h, w = input_shape
    if images.ndim != 4:
        raise OptionError(f"{where}: images must be a 4-D array [N, H, W, C] or [N, C, H, W], got {list(images.shape)}")
    if images.shape[-1] == c and images.shape[1] != c:
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1] != c:
        raise OptionError(f"{where}: images have {images.shape[1]} channels, the model takes {c}")
    x = torch.as_tensor(images.astype(np.float32) / 255.0)
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    if mean is None or std is None:
        raise OptionError(f"{where}: uint8 images need the model's mean and std, which its metadata does not record; "
                          f"give preprocessed float32 [N, C, H, W] arrays instead")
    x = (x - torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)) / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.numpy()


def _from_arrays(images, labels, input_shape, mean, std, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    images = np.asarray(images)
    if images.dtype == np.uint8:
        x = _normalize(images, input_shape, mean, std, where)
    elif images.dtype.kind == "f" and images.ndim == 4 and tuple(images.shape[1:]) == tuple(input_shape):
        x = images.astype(np.float32)
    else:
        raise OptionError(f"{where}: expected uint8 images or float32 [N, {', '.join(map(str, input_shape))}], got "
                          f"{images.dtype} {list(images.shape)}")
    if not np.isfinite(x).all():
        raise OptionError(f"{where}: the images contain NaN or infinite values")
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != len(x):
            raise OptionError(f"{where}: {len(labels)} labels for {len(x)} images")
    return x, labels


def _embedded(role: str, sha256: str, input_shape, mean, std, where: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    from .. import data
    from ..fileio import sha256_file

    if sha256 == sha256_file(data.embedded_checkpoint()):
        if role == "calib":
            return data.load_calibration().numpy(), None, "embedded digits, 128 training images"
        x, y = data.load_holdout()
        return x.numpy(), y.numpy(), "embedded digits, 360 held-out images"
    if data.noisy_checkpoint().exists() and sha256 == sha256_file(data.noisy_checkpoint()):
        images, labels = data.load_noisy(role)
        what = "128 calibration images" if role == "calib" else "360 held-out images"
        return _normalize(images, input_shape, mean, std, where), labels, f"embedded corrupted digits, {what}"
    raise OptionError(f"{where}: 'embedded' data exists only for the embedded models; give a .npz/.npy file, a "
                      f"directory of images, or 'random'")


def load_data(spec: str, input_shape: tuple[int, int, int], *, mean=None, std=None, role: str = "eval",
              source_sha256: str = "", limit: int | None = None) -> Dataset:
    """The dataset `spec` names (see the module docstring), as network inputs for `input_shape`.

    Raises:
        OptionError: an unknown source, an unreadable file, images that do not fit the model.
    """
    where = f"--{role} {spec}"
    if spec == "embedded":
        x, labels, source = _embedded(role, source_sha256, input_shape, mean, std, where)
    elif spec == "random" or spec.startswith("random:"):
        try:
            n = int(spec.partition(":")[2] or 64)
        except ValueError:
            raise OptionError(f"{where}: expected random or random:N") from None
        if not 1 <= n <= 100_000:
            raise OptionError(f"{where}: N must be in 1..100000")
        seed = 1 if role == "calib" else 2  # calibration and evaluation never share images
        x = np.random.default_rng(seed).standard_normal((n, *input_shape)).astype(np.float32)
        labels, source = None, f"{n} seeded N(0, 1) images (seed {seed})"
    else:
        path = Path(spec)
        if path.is_dir():
            x, labels = _from_arrays(*_read_folder(path, input_shape), input_shape, mean, std, where)
        elif path.suffix in (".npz", ".npy") and path.is_file():
            try:
                arrays = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise OptionError(f"{where}: cannot read it ({e})") from None
            if isinstance(arrays, np.ndarray):
                images, labels = arrays, None
            else:
                with arrays:
                    key = next((k for k in ("x", "images", f"{role}_images", "holdout_images", "calib_images")
                                if k in arrays.files), None)
                    if key is None:
                        raise OptionError(f"{where}: no image array (keys 'x', 'images') among {arrays.files[:6]}")
                    images = arrays[key]
                    lkey = next((k for k in ("labels", "y", "holdout_labels") if k in arrays.files), None)
                    labels = arrays[lkey] if lkey else None
            x, labels = _from_arrays(images, labels, input_shape, mean, std, where)
        else:
            raise OptionError(f"{where}: not 'embedded', 'random[:N]', a .npz/.npy file or a directory of images")
        source = f"{path} ({len(x)} images{', labelled' if labels is not None else ''})"
    if limit is not None and len(x) > limit:
        x, labels = x[:limit], None if labels is None else labels[:limit]
        source += f", first {limit}"
    if len(x) == 0:
        raise OptionError(f"{where}: no images")
    return Dataset(x, labels, source)


def _read_folder(path: Path, input_shape) -> tuple[np.ndarray, np.ndarray]:
    try:
        from PIL import Image
    except ImportError:
        raise OptionError(f"reading images from {path} needs Pillow (pip install pillow)") from None
    classes = sorted(d for d in path.iterdir() if d.is_dir())
    files = [(f, i) for i, d in enumerate(classes) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not classes:
        files = [(f, -1) for f in sorted(path.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise OptionError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    c, h, w = input_shape
    mode = "RGB" if c == 3 else "L"
    images = []
    for f, _ in files[:100_000]:
        try:
            img = Image.open(f).convert(mode).resize((w, h))
        except OSError as e:
            raise OptionError(f"cannot read image {f}: {e}") from None
        a = np.asarray(img, dtype=np.uint8)
        images.append(a[..., None] if a.ndim == 2 else a)
    labels = np.array([i for _, i in files[:100_000]], dtype=np.int64)
    return np.stack(images), (None if (labels < 0).all() else labels)
