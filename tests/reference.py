"""An independent functional reference of the original DiracNet v2 code, for tests only.

Written from the paper and the original repository's functional definition (flat `params` dict, F.conv2d),
never from dirac_deploy: it imports nothing from the package. It builds random checkpoints in every
historic layout, computes the original forward, and folds the way the original export notebook does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGENET_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


def eye_name(shape) -> str:
    return "eye" + "_".join(map(str, shape))


def _uniform(g, lo, hi, *shape):
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


def _random_bn(p: dict, g, name: str, n: int) -> None:
    """Trained-looking BN affine and running statistics under `name`."""
    p[f"{name}.weight"] = _uniform(g, 0.2, 1.5, n)
    p[f"{name}.bias"] = _uniform(g, -0.5, 0.5, n)
    p[f"{name}.running_mean"] = _uniform(g, -1.0, 1.0, n)
    p[f"{name}.running_var"] = _uniform(g, 0.3, 3.0, n)


def define_params(dataset: str, depth: int, width: float = 1.0, num_classes: int | None = None,
                  per_channel: bool = True, seed: int = 0, v1: bool = False) -> dict[str, torch.Tensor]:
    """Flat params as the original master train.py holds them, with realistic trained-looking values.

    BN running stats and affine parameters and alpha/beta are randomised (not left at their init), so a fold
    that ignored any of them would fail the comparison. With `v1`, the v1 branch's shapes: block convs over
    NCReLU output (2x input channels), scalar alpha/beta and the tiled delta.
    """
    g = torch.Generator().manual_seed(seed)

    def randn(*s):
        return torch.randn(*s, generator=g)

    def uniform(lo, hi, *s):
        return _uniform(g, lo, hi, *s)

    p: dict[str, torch.Tensor] = {}

    def bn(name, n):
        _random_bn(p, g, name, n)

    if dataset == "imagenet":
        widths = [int(w * width) for w in (64, 128, 256, 512)]
        counts = [2 * b for b in IMAGENET_BLOCKS[depth]]
        p["conv"] = randn(widths[0], 3, 7, 7) * (2 / (3 * 49)) ** 0.5
        num_classes = num_classes or 1000
    else:
        n = (depth - 4) // 6
        widths = [int(w * width) for w in (16, 32, 64)]
        counts = [2 * n] * 3
        p["conv"] = randn(widths[0], 3, 3, 3) * (2 / 27) ** 0.5
        num_classes = num_classes or 10
    bn("bn", widths[0])
    prev = widths[0]
    for gi, (w, count) in enumerate(zip(widths, counts)):
        for b in range(count):
            ni = (prev if b == 0 else w) * (2 if v1 else 1)
            base = f"group{gi}.block{b}"
            p[f"{base}.conv"] = randn(w, ni, 3, 3)
            k = w if per_channel and not v1 else 1
            p[f"{base}.alpha"] = uniform(0.5, 1.5, k)
            p[f"{base}.beta"] = uniform(0.05, 0.5, k)
            bn(f"{base}.bn", w)
            if v1:
                delta = v1_delta(ni, w, 3)
            else:
                delta = torch.zeros(w, ni, 3, 3)
                torch.nn.init.dirac_(delta)
            p[eye_name(delta.shape)] = delta
        prev = w
    p["fc.weight"] = randn(num_classes, prev) * (1 / prev) ** 0.5
    p["fc.bias"] = uniform(-0.1, 0.1, num_classes)
    return p


def _batch_norm(x, p, base):
    return F.batch_norm(x, p[f"{base}.running_mean"], p[f"{base}.running_var"], p[f"{base}.weight"],
                        p[f"{base}.bias"], training=False)  # eps = 1e-5, the F.batch_norm default


def _group_counts(p):
    counts = []
    g = 0
    while f"group{g}.block0.conv" in p:
        b = 0
        while f"group{g}.block{b}.conv" in p:
            b += 1
        counts.append(b)
        g += 1
    return counts


def forward(p: dict[str, torch.Tensor], x: torch.Tensor, v1: bool = False, final_relu: bool | None = None) -> torch.Tensor:
    """The original v2 functional forward (master diracnet.py, with the final ReLU of commit 93d38e3).

    With `v1`, the branch-v1 forward: NCReLU instead of ReLU in every block, no ReLU before the average pool
    (`final_relu=True` gives the v1 notebook's "original definition" of the released models, which has one).
    """
    final_relu = (not v1) if final_relu is None else final_relu
    imagenet = p["conv"].shape[-1] == 7
    if imagenet:
        o = _batch_norm(F.conv2d(x, p["conv"], padding=3, stride=2), p, "bn")
        o = F.max_pool2d(o, 3, 2, 1)
    else:
        o = F.relu(_batch_norm(F.conv2d(x, p["conv"], padding=1), p, "bn"))
    for gi, count in enumerate(_group_counts(p)):
        if gi > 0:
            o = F.max_pool2d(o, 2)
        for b in range(count):
            base = f"group{gi}.block{b}"
            w = p[f"{base}.conv"]
            alpha = p[f"{base}.alpha"].view(-1, 1, 1, 1).expand_as(w)
            beta = p[f"{base}.beta"].view(-1, 1, 1, 1).expand_as(w)
            delta = p[eye_name(w.shape)]
            w_hat = beta * F.normalize(w.view(w.size(0), -1)).view_as(w) + alpha * delta
            o = _batch_norm(F.conv2d(ncrelu(o) if v1 else F.relu(o), w_hat, padding=1), p, f"{base}.bn")
    if final_relu:
        o = F.relu(o)
    o = F.avg_pool2d(o, o.size(-1))
    return F.linear(o.view(o.size(0), -1), p["fc.weight"], p["fc.bias"])


def notebook_fold(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The export notebook's fold(), keyed as the published folded files (`features.*`, `fc.*`)."""
    out = {}

    def bn_scale(base):
        a = p[f"{base}.weight"] / torch.sqrt(p[f"{base}.running_var"] + 1e-5)
        return a, p[f"{base}.bias"] - p[f"{base}.running_mean"] * a

    a, b = bn_scale("bn")
    out["features.conv.weight"] = p["conv"] * a.view(-1, 1, 1, 1)
    out["features.conv.bias"] = b
    for gi, count in enumerate(_group_counts(p)):
        for bi in range(count):
            base = f"group{gi}.block{bi}"
            w = p[f"{base}.conv"]
            w_hat = (p[f"{base}.beta"].view(-1, 1, 1, 1) * F.normalize(w.view(w.size(0), -1)).view_as(w)
                     + p[f"{base}.alpha"].view(-1, 1, 1, 1) * p[eye_name(w.shape)])
            a, b = bn_scale(f"{base}.bn")
            out[f"features.{base}.conv.weight"] = w_hat * a.view(-1, 1, 1, 1)
            out[f"features.{base}.conv.bias"] = b
    out["fc.weight"], out["fc.bias"] = p["fc.weight"], p["fc.bias"]
    return out


# --- the historic layouts -------------------------------------------------------------------------------

def as_flat_params(p):
    """(a) master train.py model.pt7."""
    return {"params": dict(p), "epoch": 90, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}


def as_params_stats(p):
    """(b) published unfolded checkpoints: weights in params, running stats and eye deltas in stats."""
    stats = {k: v for k, v in p.items() if "running_" in k or k.startswith("eye")}
    params = {k: v for k, v in p.items() if k not in stats}
    return {"params": params, "stats": stats}


def as_folded(p):
    """(c) published folded state_dict."""
    return notebook_fold(p)


def as_native(p):
    """(d) dirac-deploy's own DiracNet state_dict naming (renamed by hand here, not by the package)."""
    out = {}
    for k, v in p.items():
        if k.startswith("eye"):
            continue
        if k == "conv":
            out["conv.weight"] = v
        elif k.endswith(".conv"):
            out[k + ".weight"] = v
            out[k + ".delta"] = p[eye_name(v.shape)]
        elif k.endswith((".alpha", ".beta")):
            block, name = k.rsplit(".", 1)
            out[f"{block}.conv.{name}"] = v
        else:
            out[k] = v
    return out


LAYOUT_WRITERS = {"v2-flat-params": as_flat_params, "v2-params-stats": as_params_stats,
                  "v2-folded": as_folded, "dirac-deploy": as_native}


# --- DiracNet v1 (branch `v1` of the original repository) -----------------------------------------------

def ncrelu(x):
    return torch.cat([x.clamp(min=0), x.clamp(max=0)], dim=1)


def v1_delta(ni, no, k):
    """The v1 `dirac_delta(ni, no, k)`: dirac(n, n) tiled (max(no // ni, 1), max(ni // no, 1)) times."""
    n = min(ni, no)
    d = torch.zeros(n, n, k, k)
    torch.nn.init.dirac_(d)
    return d.repeat(max(no // ni, 1), max(ni // no, 1), 1, 1)


def define_params_v1(dataset: str, depth: int, width: float = 1.0, seed: int = 0) -> dict[str, torch.Tensor]:
    """Flat v1 params (scalar alpha/beta, block convs over 2x channels, tiled eye deltas) with trained-looking stats."""
    return define_params(dataset, depth, width, seed=seed, v1=True)


def forward_v1(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The v1 functional forward (branch v1 diracnet.py): no ReLU before the average pool."""
    return forward(p, x, v1=True)


def forward_v1_released(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The v1 notebook's `define_train_diracnet` ("original definition" of the released models): the v1 blocks
    (scalar gamma on the tiled eye, per-channel beta on normalize(W)), and `avg_pool2d(relu(o))` at the end."""
    return forward(p, x, v1=True, final_relu=True)


def notebook_fold_v1(p: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A v1 net folded into the released folded layout (diracnet-18-0.75-br-export.hkl): BN and the Dirac
    parameterization into each conv, convs keep their [out, 2 x in] shapes (NCReLU stays an op), fc copied."""
    out = {}

    def bn_scale(base):
        a = p[f"{base}.weight"] / torch.sqrt(p[f"{base}.running_var"] + 1e-5)
        return a, p[f"{base}.bias"] - p[f"{base}.running_mean"] * a

    a, b = bn_scale("bn")
    out[f"{prefix}conv.weight"], out[f"{prefix}conv.bias"] = p["conv"] * a.view(-1, 1, 1, 1), b
    for gi, count in enumerate(_group_counts(p)):
        for bi in range(count):
            base = f"group{gi}.block{bi}"
            w = p[f"{base}.conv"]
            w_hat = (p[f"{base}.beta"].view(-1, 1, 1, 1) * F.normalize(w.view(w.size(0), -1)).view_as(w)
                     + p[f"{base}.alpha"].view(-1, 1, 1, 1) * p[eye_name(w.shape)])
            a, b = bn_scale(f"{base}.bn")
            out[f"{prefix}{base}.conv.weight"], out[f"{prefix}{base}.conv.bias"] = w_hat * a.view(-1, 1, 1, 1), b
    out["fc.weight"], out["fc.bias"] = p["fc.weight"], p["fc.bias"]
    return out


def forward_v1_folded(f: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The v1 notebook's functional folded definition (`define_diracnet` on the export file), generalized to
    the CIFAR stem: conv -> (ImageNet) max-pool 3/2/1 or (CIFAR) ReLU -> per block conv(ncrelu(o)) with max-pool
    2 between groups -> avg_pool2d(relu(o)) -> fc."""
    f = {k.removeprefix("features."): v for k, v in f.items()}
    imagenet = f["conv.weight"].shape[-1] == 7
    if imagenet:
        o = F.max_pool2d(F.conv2d(x, f["conv.weight"], f["conv.bias"], padding=3, stride=2), 3, 2, 1)
    else:
        o = F.relu(F.conv2d(x, f["conv.weight"], f["conv.bias"], padding=1))
    g = 0
    while f"group{g}.block0.conv.weight" in f:
        if g > 0:
            o = F.max_pool2d(o, 2)
        b = 0
        while f"group{g}.block{b}.conv.weight" in f:
            o = F.conv2d(ncrelu(o), f[f"group{g}.block{b}.conv.weight"], f[f"group{g}.block{b}.conv.bias"], padding=1)
            b += 1
        g += 1
    o = F.avg_pool2d(F.relu(o), o.size(-1))
    return F.linear(o.view(o.size(0), -1), f["fc.weight"], f["fc.bias"])


def as_v1_params_stats(p):
    stats = {k: v for k, v in p.items() if "running_" in k or k.startswith("eye")}
    return {"params": {k: v for k, v in p.items() if k not in stats}, "stats": stats, "epoch": 10}


def as_v1_hkl_naming(p):
    """The released .hkl naming after conversion: conv.gamma (delta scale), conv.beta (per-channel W scale)."""
    ckpt = as_v1_params_stats(p)
    params = {}
    for k, v in ckpt["params"].items():
        if k.endswith(".alpha"):
            params[k[: -len("alpha")] + "conv.gamma"] = v
        elif k.endswith(".beta"):
            params[k[: -len("beta")] + "conv.beta"] = v.expand(p[k[: -len(".beta")] + ".conv"].shape[0]).clone()
        else:
            params[k] = v
    ckpt["params"] = params
    return ckpt


# --- scaled-identity residual nets (documented layout, built and evaluated by hand) ----------------------

def define_scaled_identity(widths, blocks, classes=10, shortcut="scaled", per_channel=True, alpha=1.0, seed=0):
    """A checkpoint in the documented scaled-identity layout, tensors made here (not by the package's module)."""
    g = torch.Generator().manual_seed(seed)

    def uniform(lo, hi, *s):
        return _uniform(g, lo, hi, *s)

    sd = {}

    def conv_bn_act(prefix, cin, cout, with_act=True):
        sd[f"{prefix}.conv.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (1 / (9 * cin)) ** 0.5
        sd[f"{prefix}.bn.weight"] = uniform(0.5, 1.5, cout)
        sd[f"{prefix}.bn.bias"] = uniform(-0.2, 0.2, cout)
        sd[f"{prefix}.bn.running_mean"] = uniform(-0.5, 0.5, cout)
        sd[f"{prefix}.bn.running_var"] = uniform(0.5, 2.0, cout)
        sd[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
        if with_act:
            sd[f"{prefix}.act.alpha"] = torch.tensor(float(alpha))

    conv_bn_act("stem", 3, widths[0])
    prev = widths[0]
    for gi, (w, n) in enumerate(zip(widths, blocks)):
        if gi > 0:
            conv_bn_act(f"group{gi}.transition", prev, w)
        for i in range(n):
            p = f"group{gi}.blocks.{i}"
            conv_bn_act(p, w, w, with_act=shortcut != "preact")
            sd[f"{p}.scale"] = uniform(0.3, 1.2, w if per_channel else 1)
            if shortcut == "two_conv":
                conv_bn_act(f"{p}.inner", w, w)
        prev = w
    sd["fc.weight"] = torch.randn(classes, prev, generator=g) * (1 / prev) ** 0.5
    sd["fc.bias"] = torch.zeros(classes)
    arch = {"widths": list(widths), "blocks_per_group": list(blocks), "num_classes": classes, "in_channels": 3,
            "shortcut": shortcut, "per_channel_shortcut": per_channel, "bn_eps": 1e-5, "input_size": 32,
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    return {"format": "dirac-deploy/scaled-identity", "version": 1, "architecture": arch, "state_dict": sd}


def scaled_identity_forward(ckpt, x):
    """x' = act(BN(W * x) + s x) per block (or the preact / two-conv forms), act(z) = alpha relu(z) + (1 - alpha) z."""
    sd, arch = ckpt["state_dict"], ckpt["architecture"]

    def act(z, prefix):
        a = sd[f"{prefix}.act.alpha"]
        return a * F.relu(z) + (1 - a) * z

    def bn_conv(prefix, z):
        return _batch_norm(F.conv2d(z, sd[f"{prefix}.conv.weight"], padding=1), sd, f"{prefix}.bn")

    o = act(bn_conv("stem", x), "stem")
    for gi, n in enumerate(arch["blocks_per_group"]):
        if gi > 0:
            o = F.max_pool2d(o, 2)
            o = act(bn_conv(f"group{gi}.transition", o), f"group{gi}.transition")
        for i in range(n):
            p = f"group{gi}.blocks.{i}"
            s = sd[f"{p}.scale"].view(1, -1, 1, 1)
            if arch["shortcut"] == "preact":
                o = bn_conv(p, F.relu(o)) + s * o
            elif arch["shortcut"] == "two_conv":
                h = act(bn_conv(f"{p}.inner", o), f"{p}.inner")
                o = act(bn_conv(p, h) + s * o, p)
            else:
                o = act(bn_conv(p, o) + s * o, p)
    o = F.adaptive_avg_pool2d(o, 1).flatten(1)
    return F.linear(o, sd["fc.weight"], sd["fc.bias"])


# --- the original repository's diracconv.py layers, transcribed (never imported from the package) ---------

class _DiracConvMixin:
    """master diracconv.py: per-channel alpha (1) and beta (0.1), `dirac_` delta, W normalized per filter.
    `v1_raw=True` gives the first v1-branch form instead: scalar alpha (5) and beta (1e-5), the tiled
    `dirac_delta(ni, no, k)`, and W used as it is (alpha * delta + beta * W, no normalization)."""

    def _init_dirac(self, out_channels, v1_raw):
        self.v1_raw = v1_raw
        if v1_raw:
            self.alpha = torch.nn.Parameter(torch.Tensor([5.0]))
            self.beta = torch.nn.Parameter(torch.Tensor([1e-5]))
            ni, no, k = self.weight.shape[1], self.weight.shape[0], self.weight.shape[2:]
            n = min(ni, no)
            d = torch.zeros(n, n, *k)
            torch.nn.init.dirac_(d)
            self.register_buffer("delta", d.repeat(max(no // ni, 1), max(ni // no, 1), *([1] * len(k))))
        else:
            self.alpha = torch.nn.Parameter(torch.Tensor(out_channels).fill_(1))
            self.beta = torch.nn.Parameter(torch.Tensor(out_channels).fill_(0.1))
            self.register_buffer("delta", torch.nn.init.dirac_(self.weight.data.clone()))
        assert self.delta.shape == self.weight.shape
        self.v = (-1,) + (1,) * (self.weight.dim() - 1)

    def transform_weight(self):
        w = self.weight if self.v1_raw else F.normalize(self.weight.view(self.weight.shape[0], -1)).view_as(self.weight)
        return self.alpha.view(*self.v) * self.delta + self.beta.view(*self.v) * w


def _dirac_conv_class(base, fn):
    class DiracConvNd(base, _DiracConvMixin):
        def __init__(self, in_channels, out_channels, kernel_size, padding=0, dilation=1, bias=True, v1_raw=False):
            super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=padding, dilation=dilation,
                             bias=bias)
            self._init_dirac(out_channels, v1_raw)

        def forward(self, input):
            return fn(input, self.transform_weight(), self.bias, self.stride, self.padding, self.dilation)

    return DiracConvNd


DiracConv1d = _dirac_conv_class(torch.nn.Conv1d, F.conv1d)
DiracConv2d = _dirac_conv_class(torch.nn.Conv2d, F.conv2d)
DiracConv3d = _dirac_conv_class(torch.nn.Conv3d, F.conv3d)
