"""Train the embedded default: a CIFAR-style DiracNet-10 on scikit-learn's bundled 8x8 digits.

Writes, into --out-dir (default train-out/; the package's own copies in dirac_deploy/data/ are replaced only
with --replace-package-data, which is how the bundled files were made):
  digits_diracnet.pt7   the checkpoint in the original train.py layout {'params', 'epoch', 'optimizer'}, plus
                        the optional 'normalization' record (mean, std, input size it was trained with)
  digits_holdout.npz    the held-out 20% (uint8 8x8 `images`, `labels`, and `x`, the network inputs), never
                        seen in training
  digits_calib.npz      128 training images (`images`, `x`), for quantization calibration (never used to
                        evaluate); `quantize --calib`/`--eval` read their `x`

Needs the `train` extra (scikit-learn), which the package itself never imports:
    .venv/bin/python scripts/train_digits.py            # about a minute on 2 CPU cores -> train-out/
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from dirac_deploy.data import DIGITS_MEAN, DIGITS_STD, INPUT_SIZE, preprocess
from dirac_deploy.models.dirac import DiracNet
from dirac_deploy.spec import cifar_spec

DATA = Path(__file__).resolve().parents[1] / "dirac_deploy" / "data"


def add_output_options(ap: argparse.ArgumentParser) -> None:
    """--out-dir and --replace-package-data: the bundled models and data are replaced only when asked."""
    ap.add_argument("--out-dir", type=Path, default=Path("train-out"),
                    help="where to write the checkpoint and data (default: train-out/)")
    ap.add_argument("--replace-package-data", action="store_true",
                    help=f"write into {DATA} instead, replacing the bundled files (the tests expect them as shipped)")


def output_dir(args: argparse.Namespace) -> Path:
    if args.replace_package_data and args.out_dir != Path("train-out"):
        raise SystemExit("--out-dir and --replace-package-data name two places; give one")
    out = DATA if args.replace_package_data else args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    return out


def to_original_params(model: DiracNet) -> dict[str, torch.Tensor]:
    """Our module's state_dict in the original flat naming, one eye{no}_{ni}_{k}_{k} delta per weight shape."""
    flat = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.endswith(".conv.delta"):
            flat["eye" + "_".join(map(str, v.shape))] = v.clone()
        elif k == "conv.weight":
            flat["conv"] = v.clone()
        elif k.endswith(".conv.weight"):
            flat[k[: -len(".weight")]] = v.clone()
        elif k.endswith((".conv.alpha", ".conv.beta")):
            flat[k.replace(".conv.", ".")] = v.clone()
        else:
            flat[k] = v.clone()
    return flat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    add_output_options(ap)
    args = ap.parse_args()
    out = output_dir(args)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # values 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(images, digits.target, test_size=0.2, random_state=args.seed,
                                              stratify=digits.target)
    xt = preprocess(x_tr, mean=(0.0,) * 3, std=(1.0,) * 3)
    print(f"train-set mean {xt.mean():.4f} std {xt.std():.4f} (DIGITS_MEAN/STD in dirac_deploy/data)")
    x_train, y_train = preprocess(x_tr), torch.as_tensor(y_tr)
    x_test, y_test = preprocess(x_te), torch.as_tensor(y_te)

    spec = cifar_spec(10, width=1.0, num_classes=10, input_size=32, mean=DIGITS_MEAN, std=DIGITS_STD)
    model = DiracNet(spec)
    decay = [p for p in model.parameters() if p.dim() != 1]  # as the original: no decay on alpha, beta, BN
    rest = [p for p in model.parameters() if p.dim() == 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0}],
                          lr=0.1, momentum=0.9, nesterov=True)
    steps = args.epochs * ((len(x_train) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            xb = x_train[idx]
            shift = torch.randint(-2, 3, (2,)).tolist()  # small translations
            xb = torch.roll(xb, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"epoch {epoch + 1:2d}  loss {loss.item():.4f}  held-out acc {acc:.4f}  {time.time() - t0:.0f}s")

    # The original layout, plus the optional `normalization` record dirac-deploy reads from any layout: the
    # original code's files do not say how their inputs were normalized; this one does.
    torch.save({"params": to_original_params(model), "epoch": args.epochs, "optimizer": opt.state_dict(),
                "normalization": {"mean": list(DIGITS_MEAN), "std": list(DIGITS_STD), "input_size": INPUT_SIZE}},
               out / "digits_diracnet.pt7")
    # `images`: the raw 8x8 scans the package's own loaders preprocess; `x`: the same, preprocessed (float32
    # [N, 3, 32, 32]), which is what `quantize --calib FILE` / `--eval FILE` read
    np.savez_compressed(out / "digits_holdout.npz", images=x_te, labels=y_te.astype(np.uint8),
                        x=x_test.numpy())
    np.savez_compressed(out / "digits_calib.npz", images=x_tr[:128],  # quantization calibration (training split)
                        x=preprocess(x_tr[:128]).numpy())
    print(f"wrote {out / 'digits_diracnet.pt7'} and {out / 'digits_holdout.npz'}")


if __name__ == "__main__":
    main()
