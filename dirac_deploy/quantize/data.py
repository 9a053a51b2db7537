"""Calibration and evaluation data for low-precision artifacts, preprocessed the way the artifact records.

A data source is one of:
- `embedded`: the embedded data of an embedded model (recognized by its source checkpoint's sha256): the
  digits model's calibration and held-out splits, or the corrupted-digits model's;
- `random` or `random:N`: N seeded standard-normal images (for random-weight nets; no labels);
- a `.npz` / `.npy` file: float32 [N, C, H, W] already preprocessed, or uint8 images [N, H, W, C] /
  [N, C, H, W] in 0..255, preprocessed as below with the artifact's mean and std; labels from the `.npz`
  key `labels`, `y` or `holdout_labels` when present;
- a directory of images: either images directly inside (no labels) or the ImageFolder layout (one
  subdirectory per class; the sorted subdirectory names are labels 0..K-1, as torchvision's ImageFolder
  numbers them); needs Pillow.

uint8 images are preprocessed as ImageNet evaluation pipelines do (torchvision `Resize` + `CenterCrop`, timm's
`crop_pct`): images already at the input size are used as they are; others get their shorter side resized to
`input size / crop_fraction` (256 for 224 at the default 0.875), bilinear, then a centre crop to the input size;
then scaled to 0..1 and normalized with the model's mean and std.

`check_source` validates a source's form before any model is loaded; `holdout_split` splits one source into
calibration and evaluation parts when no evaluation set is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._optional import install_hint
from ..errors import OptionError, first_line
from . import DEFAULT_CROP_FRACTION

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")
MAX_RANDOM = 100_000
HOLDOUT_FRACTION = 0.25  # of --calib, held out for the proof when no --eval is given
MAX_DATA_BYTES = 2 << 30  # one data source in memory, checked from the file's headers before it is read
MAX_IMAGE_PIXELS = 40_000_000  # one image file (a 6000x6000 photo fits; decompression bombs do not)
IMAGE_KEYS = ("x", "images", "{role}_images", "holdout_images", "calib_images")
LABEL_KEYS = ("labels", "y", "holdout_labels")


@dataclass
class Dataset:
    x: np.ndarray  # float32 [N, C, H, W], the network's input
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.x)


def resize_crop(x, size: tuple[int, int], crop_fraction: float = DEFAULT_CROP_FRACTION):
    """float [N, C, H, W] -> [N, C, h, w]: unchanged when already (h, w); else the shorter side resized to
    max(h, w) / crop_fraction (bilinear, aspect kept), then the centre (h, w) crop."""
    import torch.nn.functional as F

    h, w = size
    if tuple(x.shape[-2:]) == (h, w):
        return x
    ih, iw = x.shape[-2:]
    short = max(h, w) / crop_fraction
    scale = short / min(ih, iw)
    nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (nh - h) // 2, (nw - w) // 2
    return x[..., top:top + h, left:left + w]


def _normalize(images: np.ndarray, input_shape, mean, std, where: str,
               crop_fraction: float = DEFAULT_CROP_FRACTION) -> np.ndarray:
    import torch

    c, h, w = input_shape
    if images.ndim != 4:
        raise OptionError(f"{where}: images must be a 4-D array [N, H, W, C] or [N, C, H, W], got {list(images.shape)}")
    if images.shape[-1] == c and images.shape[1] != c:
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1] != c:
        raise OptionError(f"{where}: images have {images.shape[1]} channels, the model takes {c}")
    if mean is None or std is None:
        raise OptionError(f"{where}: uint8 images need the model's mean and std, which its metadata does not record; "
                          f"give preprocessed float32 [N, C, H, W] arrays instead")
    x = resize_crop(torch.as_tensor(images.astype(np.float32) / 255.0), (h, w), crop_fraction)
    x = (x - torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)) / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.numpy()


def _from_arrays(images, labels, input_shape, mean, std, where: str,
                 crop_fraction: float = DEFAULT_CROP_FRACTION) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(images, list):  # a folder: each image at its own size, preprocessed one by one
        x = np.concatenate([_normalize(a[None], input_shape, mean, std, where, crop_fraction) for a in images])
        images = x
    else:
        images = np.asarray(images)
    if images.ndim == 4 and min(images.shape[1:]) == 0:
        raise OptionError(f"{where}: images of shape {list(images.shape[1:])} have no pixels")
    if images.dtype == np.uint8:
        x = _normalize(images, input_shape, mean, std, where, crop_fraction)
    elif images.dtype.kind == "f" and images.ndim == 4 and tuple(images.shape[1:]) == tuple(input_shape):
        x = images.astype(np.float32, copy=False)
    else:
        raise OptionError(f"{where}: expected uint8 images or float32 [N, {', '.join(map(str, input_shape))}], got "
                          f"{images.dtype} {list(images.shape)}")
    if not np.isfinite(x).all():
        raise OptionError(f"{where}: the images contain NaN or infinite values")
    if labels is not None:
        labels = _labels(labels, len(x), where)
    return x, labels


def embedded_model(sha256: str) -> str | None:
    """'digits' or 'noisy' when `sha256` is that bundled checkpoint's (the only models 'embedded' data fits)."""
    from .. import data
    from ..fileio import sha256_file

    if not sha256:
        return None
    for name, path in data.EMBEDDED.items():
        if path().exists() and sha256 == sha256_file(path()):
            return name
    return None


def _embedded(role: str, sha256: str, input_shape, mean, std, where: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    from .. import data

    which = embedded_model(sha256)
    if which == "digits":
        if role == "calib":
            return data.load_calibration().numpy(), None, "embedded digits, 128 training images"
        x, y = data.load_holdout()
        return x.numpy(), y.numpy(), "embedded digits, 360 held-out images"
    if which == "noisy":
        images, labels = data.load_noisy(role)
        what = "128 calibration images" if role == "calib" else "360 held-out images"
        return _normalize(images, input_shape, mean, std, where), labels, f"embedded corrupted digits, {what}"
    raise OptionError(f"{where}: 'embedded' data exists only for the bundled models; give a .npz/.npy file, a "
                      f"directory of images, or 'random'")


def _random_count(spec: str, where: str) -> int:
    try:
        n = int(spec.partition(":")[2] or 64)
    except ValueError:
        raise OptionError(f"{where}: expected random or random:N with N a whole number, e.g. random:64") from None
    if not 1 <= n <= MAX_RANDOM:
        raise OptionError(f"{where}: N must be in 1..{MAX_RANDOM}, got {n}")
    return n


def check_source(spec: str, role: str = "eval") -> None:
    """Validate a data source's form (see the module docstring) without reading it, so a bad option fails
    before any fold or export.

    Raises:
        OptionError: an unknown form, random:N out of range, a missing path, a single image or another file.
    """
    where = f"--{role} {spec}"
    if spec == "embedded":
        return
    if spec == "random" or spec.startswith("random:"):
        _random_count(spec, where)
        return
    path = Path(spec)
    if path.is_dir():
        return
    if not path.exists():
        raise OptionError(f"{where}: no such file or directory; give 'embedded' (bundled models only), "
                          f"'random[:N]', a .npz/.npy file or a directory of images")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise OptionError(f"{where}: a single image cannot calibrate or prove anything; give the directory that "
                          f"holds the images ({path.parent}) or a .npz/.npy array of them")
    if path.suffix.lower() not in (".npz", ".npy") or not path.is_file():
        raise OptionError(f"{where}: not 'embedded', 'random[:N]', a .npz/.npy file or a directory of images")


def _labels(labels, n: int, where: str) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "iuf" or (labels.dtype.kind == "f" and not (np.isfinite(labels).all()
                                                                           and (labels == np.round(labels)).all())):
        raise OptionError(f"{where}: labels must be whole numbers (class indices), got {labels.dtype}")
    labels = labels.astype(np.int64)
    if len(labels) != n:
        raise OptionError(f"{where}: {len(labels)} labels for {n} images")
    if len(labels) and labels.min() < 0:
        raise OptionError(f"{where}: labels must be class indices >= 0, found {int(labels.min())}")
    if len(labels) and labels.max() >= 1_000_000:
        raise OptionError(f"{where}: a label of {int(labels.max())} is no class index")
    return labels


def load_data(spec: str, input_shape: tuple[int, int, int], *, mean=None, std=None, role: str = "eval",
              source_sha256: str = "", limit: int | None = None,
              crop_fraction: float = DEFAULT_CROP_FRACTION) -> Dataset:
    """The dataset `spec` names (see the module docstring), as network inputs for `input_shape`.

    Raises:
        OptionError: an unknown source, an unreadable file, images that do not fit the model.
    """
    check_source(spec, role)
    where = f"--{role} {spec}"
    if spec == "embedded":
        x, labels, source = _embedded(role, source_sha256, input_shape, mean, std, where)
    elif spec == "random" or spec.startswith("random:"):
        n = _random_count(spec, where)
        n = n if limit is None else min(n, limit)
        if n * 4 * int(np.prod(input_shape)) > MAX_DATA_BYTES:
            raise OptionError(f"{where}: {n} images of {'x'.join(map(str, input_shape))} take more than "
                              f"{MAX_DATA_BYTES >> 20} MiB; ask for fewer")
        seed = 1 if role == "calib" else 2  # calibration and evaluation never share images
        x = np.random.default_rng(seed).standard_normal((n, *input_shape)).astype(np.float32)
        labels, source = None, f"{n} seeded N(0, 1) images (seed {seed})"
    else:
        path = Path(spec)
        if path.is_dir():
            images, labels, classes = _read_folder(path, input_shape)
            x, labels = _from_arrays(images, labels, input_shape, mean, std, where, crop_fraction)
        else:
            images, labels = _read_arrays(path, role, limit, where)
            x, labels = _from_arrays(images, labels, input_shape, mean, std, where, crop_fraction)
            classes = []
        source = f"{path} ({len(x)} images{', labelled' if labels is not None else ''})"
        if classes:
            shown = ", ".join(f"{name}={i}" for i, name in enumerate(classes[:4]))
            source += f"; labels from sorted folder names: {shown}{', ...' if len(classes) > 4 else ''}"
    if limit is not None and len(x) > limit:
        x, labels = x[:limit], None if labels is None else labels[:limit]
        source += f", first {limit}"
    if len(x) == 0:
        raise OptionError(f"{where}: no images")
    return Dataset(x, labels, source)


def _npy_header(stream, where: str, name: str) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(stream)
        else:
            shape, _, dtype = npy.read_array_header_2_0(stream)
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise OptionError(f"{where}: {name} is not a readable .npy array ({str(e)[:120]})") from None
    if dtype.hasobject:
        raise OptionError(f"{where}: {name} holds Python objects (reading them needs pickle, which is refused); "
                          f"save plain numeric arrays")
    return shape, dtype


def _checked_size(shape, dtype, where: str, name: str, limit: int | None) -> int:
    """The bytes `name` will take (the first `limit` images of an image array), refused above the budget."""
    n = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if limit is not None and shape and name.split(".")[0] not in LABEL_KEYS and shape[0] > limit:
        n = n // shape[0] * limit
    if n > MAX_DATA_BYTES:
        raise OptionError(f"{where}: {name} declares {list(shape)} {dtype} ({n / 2**30:.1f} GiB), over the "
                          f"{MAX_DATA_BYTES >> 30} GiB a data source may take; use a subset")
    return n


def _read_arrays(path: Path, role: str, limit: int | None, where: str):
    """(images, labels or None) of a .npy / .npz, each member's header checked against the budget (and, for a
    .npz, against the size its archive entry declares) before anything is loaded; never unpickles."""
    import zipfile

    try:
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as f:
                shape, dtype = _npy_header(f, where, path.name)
                _checked_size(shape, dtype, where, path.name, limit)
                declared, held = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize, path.stat().st_size - f.tell()
            if declared > held:
                raise OptionError(f"{where}: declares {list(shape)} {dtype} ({declared:,} bytes) but holds {held:,} "
                                  f"(truncated)")
            images = np.load(path, allow_pickle=False, mmap_mode="r")
            return np.array(images[:limit] if limit is not None else images), None
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            image_keys = [k.format(role=role) for k in IMAGE_KEYS]
            key = next((k for k in image_keys if k in members), None)
            if key is None:
                raise OptionError(f"{where}: no image array (keys 'x', 'images') among {sorted(members)[:6]}")
            lkey = next((k for k in LABEL_KEYS if k in members), None)
            out = {}
            for name in [key] + ([lkey] if lkey else []):
                info = members[name]
                with archive.open(info) as stream:
                    shape, dtype = _npy_header(stream, where, name)
                need = _checked_size(shape, dtype, where, name, None)  # a member is read whole, whatever the limit
                if info.file_size < need:
                    raise OptionError(f"{where}: {name} declares {list(shape)} {dtype} but its entry holds "
                                      f"{info.file_size:,} bytes (truncated)")
                with archive.open(info) as stream:
                    arr = np.lib.format.read_array(stream, allow_pickle=False)
                out[name] = arr[:limit] if limit is not None and name == key else arr
            return out[key], out.get(lkey) if lkey else None
    except OptionError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError, NotImplementedError,
            RuntimeError) as e:
        raise OptionError(f"{where}: cannot read it: corrupt or truncated ({type(e).__name__}: "
                          f"{first_line(e, 160)})") from None


def holdout_split(data: Dataset, fraction: float = HOLDOUT_FRACTION, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(calibration, evaluation): a seeded random `fraction` of `data` held out for the proof, never
    calibrated on.

    Raises:
        OptionError: fewer than 2 images (nothing left to calibrate on or to prove with).
    """
    n = len(data)
    k = max(1, round(n * fraction))
    if n < 2 or k >= n:
        raise OptionError(f"`calib` has {n} image(s): too few to hold out a part for the proof; give more images "
                          f"or a separate `evaluation` set")
    order = np.random.default_rng(seed).permutation(n)
    ev, cal = np.sort(order[:k]), np.sort(order[k:])

    def part(idx, what):
        return Dataset(data.x[idx], None if data.labels is None else data.labels[idx],
                       f"{data.source}: {what} {len(idx)} of {n} (seeded split)")

    return part(cal, "calibration part,"), part(ev, "held-out part,")


def _read_folder(path: Path, input_shape) -> tuple[list[np.ndarray], np.ndarray | None, list[str]]:
    """Images (uint8 [H, W, C], each at its own size) and labels from sorted class folders, and the class names."""
    try:
        from PIL import Image
    except ImportError:
        raise OptionError(f"reading images from {path} needs Pillow ({install_hint('PIL')})") from None
    classes = sorted(d for d in path.iterdir() if d.is_dir())
    files = [(f, i) for i, d in enumerate(classes) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not classes:
        files = [(f, -1) for f in sorted(path.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    files = [(f, i) for f, i in files if f.is_file()]  # a FIFO or device named x.png would block the read
    if not files:
        raise OptionError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    c = input_shape[0]
    mode = "RGB" if c == 3 else "L"
    images = []
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS // 2  # PIL refuses (DecompressionBombError) above twice this
    total = 0
    for f, _ in files[:MAX_RANDOM]:
        try:
            with Image.open(f) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise ValueError(f"{img.width}x{img.height} pixels, over {MAX_IMAGE_PIXELS:,}")
                a = np.asarray(img.convert(mode), dtype=np.uint8)
        except Exception as e:  # PIL's decoders raise many types (OSError, ValueError, SyntaxError, bombs...)
            raise OptionError(f"cannot read image {f}: {type(e).__name__}: {str(e)[:160]}") from None
        total += a.size
        if total > MAX_DATA_BYTES:
            raise OptionError(f"{path}: the images take more than {MAX_DATA_BYTES >> 30} GiB; use a subset")
        images.append(a[..., None] if a.ndim == 2 else a)
    labels = np.array([i for _, i in files[:MAX_RANDOM]], dtype=np.int64)
    return images, (None if (labels < 0).all() else labels), [d.name for d in classes]
