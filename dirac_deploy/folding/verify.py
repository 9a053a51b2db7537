"""Numerical proof that two models compute the same function.

`compare` runs both models in float32 eval mode on the same seeded inputs and reports max absolute and
relative logit error and top-1 agreement (`proof.Proof`, tolerance explained there).
"""

from __future__ import annotations

import torch

from ..errors import OptionError, first_line
from ..proof import DEFAULT_RTOL, Proof, compare_logits

__all__ = ["DEFAULT_RTOL", "Proof", "compare", "compare_logits", "seeded_inputs"]


def seeded_inputs(batch: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Standard-normal images from a private generator (the global RNG is left alone)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, size, size, generator=gen)


@torch.no_grad()
def compare(reference: torch.nn.Module, candidate: torch.nn.Module, inputs: torch.Tensor, *,
            rtol: float = DEFAULT_RTOL, reference_name: str = "unfolded model") -> Proof:
    """Run both modules on `inputs` and compare their logits.

    Raises:
        OptionError: the models cannot run on inputs of this shape (too small for their pooling, usually).
    """
    try:
        ref = reference(inputs)
        got = candidate(inputs)
    except RuntimeError as e:
        first = first_line(e)
        raise OptionError(f"the model cannot run on inputs of shape {list(inputs.shape)} ({first[:200]}); the input "
                          f"size is probably too small for its pooling: choose a larger `input_size`") from None
    return compare_logits(ref, got, rtol=rtol, input_shape=tuple(inputs.shape), reference_name=reference_name)
