"""Model size and cost: parameter counts and FLOPs (2 x multiply-accumulates of convs and linears)."""

from __future__ import annotations

import torch
from torch import nn

from .errors import OptionError, first_line


def count_parameters(model: nn.Module) -> int:
    """Learnable parameters (buffers such as running stats and Dirac deltas are not counted)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, in_channels: int, size: int) -> int:
    """FLOPs of one forward at batch 1: 2 x MACs of every Conv2d / Linear / Dirac conv, measured with hooks."""
    from .models.dirac import DiracConv2d

    macs = 0

    def hook(module, _inputs, output):
        nonlocal macs
        if isinstance(module, (nn.Conv2d, DiracConv2d)):
            w = module.weight
            macs += output.numel() * w.shape[1] * w.shape[2] * w.shape[3] // getattr(module, "groups", 1)
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear, DiracConv2d))]
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, in_channels, size, size, device=device))
    except RuntimeError as e:
        first = first_line(e)
        raise OptionError(f"the model cannot run on {size}x{size} inputs ({first[:200]}); the input size is "
                          f"probably too small for its pooling: choose a larger `input_size`") from None
    finally:
        for h in handles:
            h.remove()
    return 2 * macs
