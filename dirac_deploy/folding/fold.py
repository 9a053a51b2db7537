"""Fold a DiracNet into a plain conv-ReLU chain (see `chain`) and prove it equal."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EquivalenceError
from ..models.dirac import DiracNet
from ..models.plain import PlainNet
from ..models.scaled_identity import ScaledIdentityNet
from ..spec import DiracNetSpec, ScaledIdentitySpec
from .chain import canonicalize, diracnet_ops, to_plain
from .scaled_identity import scaled_identity_ops
from .verify import DEFAULT_RTOL, Proof, compare, seeded_inputs


@dataclass
class FoldResult:
    """The folded model with its proof and notes on what the fold did. `plain` is in eval mode."""

    plain: PlainNet
    proof: Proof
    spec: DiracNetSpec | ScaledIdentitySpec
    notes: list[str] = field(default_factory=list)


NCRELU_NOTES = {
    "keep": "v1: NCReLU kept as a layer (the authors' folded form: every conv keeps its size); dropped where a "
            "ReLU precedes it (it is [relu(x), 0] there)",
    "absorb": "v1: NCReLU absorbed into the preceding conv (doubled outputs, sign moved into the next conv) "
              "wherever no max-pool sits between, for a pure conv-ReLU chain; kept as a layer after max-pools",
}


def folded_plain(model: DiracNet | ScaledIdentityNet, ncrelu: str = "keep") -> tuple[PlainNet, list[str]]:
    """The folded chain of `model` and notes (reads `model`, never writes it); rewrites in `chain.canonicalize`.

    `ncrelu` picks the v1 form: "keep" (NCReLU stays a layer, the authors' size) or "absorb" (conv-ReLU only).
    """
    if isinstance(model, ScaledIdentityNet):
        ops, notes = scaled_identity_ops(model)
    elif isinstance(model, DiracNet):
        ops, notes = diracnet_ops(model.spec, model), []
        if model.spec.version == 1:
            notes.append(NCRELU_NOTES[ncrelu])
    else:
        raise TypeError(f"fold takes a DiracNet or ScaledIdentityNet, got {type(model).__name__}; "
                        f"for other modules use fold_module")
    return to_plain(canonicalize(ops, ncrelu)), notes


def fold(model: DiracNet | ScaledIdentityNet, *, check_batch: int = 4, seed: int = 0, rtol: float = DEFAULT_RTOL,
         input_size: int | None = None, ncrelu: str = "keep") -> FoldResult:
    """Fold `model` (eval mode) into a plain chain and verify it.

    Args:
        model: a `DiracNet` (v2 or v1) or `ScaledIdentityNet` in eval mode; it is not modified.
        check_batch: number of seeded N(0,1) images the proof runs on.
        seed: seed of those images.
        rtol: tolerance on max|logit error| / max|logit|.
        input_size: spatial size of the check images (default: the spec's input size).
        ncrelu: v1 only: "keep" NCReLU as a layer (default; the authors' parameter count) or "absorb" it into
            the preceding conv (a pure conv-ReLU chain, twice the outputs at those convs).

    Returns:
        FoldResult with the plain model (eval mode) and its proof.

    Raises:
        EquivalenceError: the model is in train mode, or the folded chain misses the tolerance.
        UnfoldableError: a block cannot become a same-width chain (named in the message).
    """
    if model.training:
        raise EquivalenceError("refusing to fold a model in train mode: batch norm would use batch statistics, "
                               "not its running averages; call model.eval() first")
    spec = model.spec
    plain, notes = folded_plain(model, ncrelu)
    inputs = seeded_inputs(check_batch, spec.in_channels, input_size or spec.input_size, seed)
    inputs = inputs.to(next(model.parameters()).device)
    plain.to(inputs.device)
    proof = compare(model, plain, inputs, rtol=rtol)
    if not proof.ok:
        raise EquivalenceError(f"folded {spec.name} does not reproduce the unfolded model: {proof.describe()}")
    return FoldResult(plain, proof, spec, notes)
