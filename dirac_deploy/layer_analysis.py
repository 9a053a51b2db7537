"""Per-layer diagnostics of a folded chain: how close each kernel is to a scaled identity, its exact spectrum,
and the activation scale through the chain.

- Identity distance: ||W - diag(c) delta||_F / ||W||_F with c[o] = W[o, o, k//2, k//2] (the best per-channel
  scaled identity on the centre tap). 0 means the layer is a scaled identity; 1 means nothing of one is left.
- Singular values (Sedghi, Gupta, Long, ICLR 2019): a stride-1 conv with circular padding on n x n inputs is
  block-diagonalized by the 2-D DFT; its singular values are those of the out x in matrices
  K_hat(u, v) = sum_{p,q} W[:, :, p, q] exp(-2 pi i (p u + q v) / n) over all n^2 frequencies. Exact for
  circular padding; zero padding (what the chain runs) differs only at the borders.
- Identity dominance: per output channel, |diagonal centre tap| / max |rest of the filter|, summarized by its
  median and maximum over channels. Per-channel int8 takes each channel's scale from its largest weight, so
  above ~127 the learned rest of that filter rounds to zero: why a layer quantizes badly (see `quantize`).
- Activation RMS: root mean square of each ReLU's output on seeded N(0, 1) input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._optional import require
from .artifacts.plain import PlainArtifact
from .errors import DiracDeployError
from .kernels import identity_dominance
from .kinds import kind_of
from .opener import open_artifact


def conv_singular_values(weight: torch.Tensor, n: int) -> torch.Tensor:
    """All singular values of the circular stride-1 conv with `weight` [out, in, k, k] on n x n inputs."""
    w = weight.detach().double()
    out, cin, kh, kw = w.shape
    padded = torch.zeros(out, cin, n, n, dtype=w.dtype)
    for p in range(kh):  # taps wrap around the n x n torus (matters only when the kernel exceeds the input)
        for q in range(kw):
            padded[:, :, p % n, q % n] += w[:, :, p, q]
    transforms = torch.fft.fft2(padded)  # [out, in, n, n]
    mats = transforms.permute(2, 3, 0, 1).reshape(n * n, out, cin)
    return torch.linalg.svdvals(mats).reshape(-1)


def identity_distance(weight: torch.Tensor) -> float:
    """||W - diag(c) delta|| / ||W|| with c the centre-tap diagonal (first min(out, in) channels)."""
    w = weight.detach().double()
    out, cin, kh, kw = w.shape
    n = min(out, cin)
    residual = w.clone()
    idx = torch.arange(n)
    residual[idx, idx, kh // 2, kw // 2] = 0.0
    norm = float(w.norm())
    return float(residual.norm()) / norm if norm > 0 else 0.0


@dataclass
class LayerStats:
    name: str
    shape: tuple[int, ...]
    input_size: int
    identity_distance: float
    identity_dominance: float  # median over output channels (0: no diagonal, e.g. the stem)
    identity_dominance_max: float
    spectral_norm: float | None  # None for strided convs (the formula is for stride 1)
    condition_number: float | None
    activation_rms: float  # after this conv's activation (or of the conv output if none follows)


def inspect_layers(path, options=None) -> tuple[str, tuple[int, int, int], list[LayerStats]]:
    """(description, input shape, per-conv stats) for a plain.pth or any checkpoint `fold` reads."""
    loaded = open_artifact(path, options)
    if not isinstance(loaded, PlainArtifact):
        raise DiracDeployError(f"{path} is {kind_of(path).description}; per-layer analysis needs the PyTorch chain: "
                               f"give the plain.pth or checkpoint it was exported from")
    return f"{loaded.name} ({loaded.source})", loaded.input_shape, analyze_chain(loaded.plain, loaded.input_shape)


@torch.no_grad()
def analyze_chain(plain: nn.Sequential, input_shape: tuple[int, int, int], *, batch: int = 8,
                  seed: int = 0) -> list[LayerStats]:
    """LayerStats for every conv of a plain chain, running seeded N(0,1) images through it."""
    sizes: dict[str, int] = {}
    stats: list[LayerStats] = []
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *input_shape, generator=gen)
    modules = list(plain.named_children())
    for i, (name, m) in enumerate(modules):
        if isinstance(m, nn.Conv2d):
            sizes[name] = x.shape[-1]
        x = m(x)
        if isinstance(m, nn.Conv2d):
            nxt = modules[i + 1][1] if i + 1 < len(modules) else None
            act = nxt(x) if isinstance(nxt, (nn.ReLU, nn.LeakyReLU)) else x
            rms = float(act.double().pow(2).mean().sqrt())
            sv = None
            if m.stride == (1, 1) and m.groups == 1 and m.dilation == (1, 1):
                sv = conv_singular_values(m.weight, sizes[name])
            smax = smin = cond = None
            if sv is not None:
                smax, smin = float(sv.max()), float(sv.min())
                cond = smax / smin if smin > 0 else float("inf")
            dom = identity_dominance(m.weight) if m.weight.dim() == 4 else np.zeros(1)
            stats.append(LayerStats(name, tuple(m.weight.shape), sizes[name], identity_distance(m.weight),
                                    float(np.median(dom)), float(dom.max()), smax, cond, rms))
    return stats


def plot_layers(stats: list[LayerStats], path, title: str):
    """Six panels against layer index: identity distance, identity dominance (median and max over channels),
    spectral norm, condition number, activation RMS. On a log axis a zero (the stem has no identity) is drawn
    as a hollow marker on the axis' floor, labelled 0, rather than dropped."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fileio import atomic_write
    from .plotting import readable_log_axis

    idx = list(range(len(stats)))
    fig, axes = plt.subplots(2, 3, figsize=(16, 7), sharex=True)
    panels: list[tuple[str, list, bool]] = [("identity distance ||W - c delta|| / ||W||", [s.identity_distance for s in stats], False),
              ("identity dominance, median over output channels", [s.identity_dominance for s in stats], True),
              ("identity dominance, max over output channels (int8 limit 127)",
               [s.identity_dominance_max for s in stats], True),
              ("spectral norm (circular, exact)", [s.spectral_norm for s in stats], True),
              ("condition number", [s.condition_number for s in stats], True),
              ("activation RMS after the layer", [s.activation_rms for s in stats], True)]
    for ax, (label, values, log) in zip(axes.flat, panels):
        pts = [(i, v) for i, v in zip(idx, values) if v is not None and v == v and v != float("inf")]
        shown = [(i, v) for i, v in pts if v > 0 or not log]
        ax.plot([p[0] for p in shown], [p[1] for p in shown], marker="o")
        ax.set_title(label, fontsize=10)
        if label.startswith("identity dominance"):
            ax.axhline(127, color="tab:red", ls="--", lw=1, label="127: per-channel int8 keeps no learned part")
        if log:
            ax.set_yscale("log")
            readable_log_axis(ax)
            zeros = [i for i, v in pts if v <= 0]
            if zeros:
                floor = ax.get_ylim()[0]
                ax.plot(zeros, [floor] * len(zeros), ls="none", marker="o", mfc="none", color="tab:blue",
                        clip_on=False, label="0 (drawn on the axis)")
                for i in zeros:
                    ax.annotate("0", (i, floor), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
        ax.grid(True, alpha=0.3)
    for ax in axes[1]:
        ax.set_xticks(idx, [s.name.removesuffix("_conv") for s in stats], rotation=70, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
