"""Train the second embedded model, for low-precision checks: a wide DiracNet-16-2 on corrupted digits.

The digits model is too narrow (16-64 channels) and its task too easy (99.4%) to show what int8 does to a
DiracNet: the damage grows with width, because the folded identity (the diagonal centre tap) sets each
output channel's int8 scale while the learned part shrinks like 1/sqrt(9 C). This model has ImageNet-like
widths in its last group (32, 64, 128 channels) and a task it gets clearly wrong sometimes: scikit-learn's
8x8 digits, upsampled, rotated, scaled, shifted, tinted, over a cluttered noisy background with a faint
second digit. Everything is generated from the bundled digits with seeded numpy, so it needs no download.

Writes, into --out-dir (default train-out/; dirac_deploy/data/ only with --replace-package-data):
  noisy_diracnet.pt7   DiracNet-16-2 in the original train.py layout (weights stored as float16 to keep the
                       package small; read as float32 exactly), with its `normalization` record
  noisy_data.npz       `calib_images` (128, for quantization calibration, from the training distribution),
                       `holdout_images` / `holdout_labels` (360, the held-out digits, one corruption each),
                       uint8 [N, 32, 32, 3]

Needs the `train` extra (scikit-learn):
    .venv/bin/python scripts/train_noisy_digits.py        # about 20 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

# the original train.py's flat naming, written once in the default model's training script
from train_digits import (  # scripts/ is on sys.path when a script runs
    add_output_options,
    output_dir,
    to_original_params,
)

from dirac_deploy.models.dirac import DiracNet
from dirac_deploy.spec import cifar_spec

SIZE = 32


def corrupt(images: np.ndarray, pool: np.ndarray, seed: int) -> np.ndarray:
    """uint8 [N, 8, 8] digits (0..16) -> uint8 [N, 32, 32, 3] corrupted colour images (seeded)."""
    rng = np.random.default_rng(seed)
    n = len(images)
    digits = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0
    clutter = torch.as_tensor(pool[rng.integers(0, len(pool), n)], dtype=torch.float32).unsqueeze(1) / 16.0

    def place(x, angle, scale, shift):
        theta = torch.zeros(len(x), 2, 3)
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = (torch.as_tensor(v, dtype=torch.float32)
                                                                          for v in (cos, -sin, sin, cos))
        theta[:, :, 2] = torch.as_tensor(shift, dtype=torch.float32)
        up = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        grid = F.affine_grid(theta, (len(x), 1, SIZE, SIZE), align_corners=False)
        return F.grid_sample(up, grid, align_corners=False)

    main = place(digits, rng.uniform(-0.45, 0.45, n), rng.uniform(0.75, 1.15, n), rng.uniform(-0.25, 0.25, (n, 2)))
    faint = place(clutter, rng.uniform(-3.1, 3.1, n), rng.uniform(0.45, 0.8, n), rng.uniform(-0.7, 0.7, (n, 2)))
    fg = torch.as_tensor(rng.uniform(0.45, 1.0, (n, 3, 1, 1)), dtype=torch.float32)
    bg = torch.as_tensor(rng.uniform(0.0, 0.5, (n, 3, 1, 1)), dtype=torch.float32)
    noise = torch.as_tensor(rng.normal(0.0, 0.12, (n, 3, SIZE, SIZE)), dtype=torch.float32)
    img = bg + (fg - bg) * main + 0.35 * (fg - bg) * faint + noise
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def to_input(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.as_tensor(images, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--copies", type=int, default=10, help="corrupted copies of each training digit per epoch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    add_output_options(ap)
    args = ap.parse_args()
    out = output_dir(args)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    digits = load_digits()
    images = digits.images.astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(images, digits.target, test_size=0.2, random_state=args.seed,
                                              stratify=digits.target)
    holdout = corrupt(x_te, x_tr, seed=10_000)
    calib = corrupt(x_tr[:128], x_tr, seed=20_000)
    sample = corrupt(x_tr, x_tr, seed=1).astype(np.float32) / 255.0
    mean = tuple(float(v) for v in sample.mean(axis=(0, 1, 2)))
    std = tuple(float(v) for v in sample.std(axis=(0, 1, 2)))
    print(f"mean {mean} std {std}")
    spec = cifar_spec(16, width=2.0, num_classes=10, input_size=SIZE, mean=mean, std=std)
    model = DiracNet(spec)
    decay = [p for p in model.parameters() if p.dim() != 1]  # as the original: no decay on alpha, beta, BN
    rest = [p for p in model.parameters() if p.dim() == 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0}],
                          lr=0.1, momentum=0.9, nesterov=True)
    per_epoch = len(x_tr) * args.copies
    steps = args.epochs * ((per_epoch + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    x_hold, y_hold = to_input(holdout, mean, std), torch.as_tensor(y_te)
    t0 = time.time()
    for epoch in range(args.epochs):
        train = corrupt(np.concatenate([x_tr] * args.copies), x_tr, seed=100 + epoch)
        x_train, y_train = to_input(train, mean, std), torch.as_tensor(np.concatenate([y_tr] * args.copies))
        model.train()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(perm), 128):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(x_hold).argmax(1) == y_hold).float().mean().item()
        print(f"epoch {epoch + 1:2d}  loss {loss.item():.4f}  held-out acc {acc:.4f}  {time.time() - t0:.0f}s", flush=True)
    # float16 weights and no stored eye deltas (the loader regenerates them): a smaller package
    params = {k: v.half() for k, v in to_original_params(model).items() if not k.startswith("eye")}
    torch.save({"params": params, "epoch": args.epochs,
                "normalization": {"mean": list(mean), "std": list(std), "input_size": SIZE}},
               out / "noisy_diracnet.pt7")
    np.savez_compressed(out / "noisy_data.npz", calib_images=calib, holdout_images=holdout,
                        holdout_labels=y_te.astype(np.uint8))
    print(f"wrote {out / 'noisy_diracnet.pt7'} and {out / 'noisy_data.npz'}")


if __name__ == "__main__":
    main()
