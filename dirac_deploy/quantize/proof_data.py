"""Which data calibrates a low-precision artifact and which proves it, decided before any fold or export, and
loaded with the caveats a proof needs: never the calibration images, enough images for the agreement gate,
labels the model can have.

`embedded` is the default only for the bundled models; without --eval the proof runs on data held out from
--calib (disjoint random images for `random[:N]`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OptionError
from .data import Dataset, check_source, embedded_model, holdout_split, load_data


def min_eval_images(min_agreement: float) -> int:
    """The fewest evaluation images on which a `min_agreement` gate tolerates one disagreement,
    ceil(1 / (1 - min_agreement)): with fewer, a single image decides the gate and it proves little."""
    if min_agreement >= 1:
        return 1
    return max(1, math.ceil(1 / (1 - min_agreement) - 1e-9))


def image_overlap(a: np.ndarray, b: np.ndarray) -> int:
    """How many images of `b` are also in `a` (byte-identical)."""
    seen = {hashlib.sha256(img.tobytes()).digest() for img in a}
    return sum(hashlib.sha256(img.tobytes()).digest() in seen for img in b)


@dataclass
class DataPlan:
    calib: str
    evaluation: str | None  # None: hold out part of calib
    note: str = ""


def check_data_options(calib: str | None, evaluation: str | None) -> None:
    """Every data source's form checked, and the proof's data kept apart from the calibration data, before
    any model file is opened (a typo costs no fold)."""
    for spec, role in ((calib, "calib"), (evaluation, "eval")):
        if spec is not None:
            check_source(spec, role)
    if calib is not None and evaluation is not None and calib == evaluation and calib != "embedded" \
            and not calib.startswith("random"):
        raise OptionError(f"`evaluation` {evaluation} is the calibration data: a proof on the images the artifact was "
                          f"calibrated on proves nothing about others; give a held-out set, or leave `evaluation` out to "
                          f"hold out part of `calib`")
    if (calib is not None and evaluation is not None and Path(calib).exists() and Path(evaluation).exists()
            and Path(calib).resolve() == Path(evaluation).resolve()):
        raise OptionError(f"`evaluation` {evaluation} and `calib` {calib} are the same data; give a held-out set, or "
                          f"leave `evaluation` out to hold out part of `calib`")


def plan_data(model_name: str, calib: str | None, evaluation: str | None, source_sha256: str) -> DataPlan:
    """Which data calibrates and which proves (after `check_data_options`), for the opened model whose
    source checkpoint has `source_sha256`. 'embedded' is the default only for the bundled models; without
    --eval the proof runs on data held out from --calib."""
    needs_embedded = "embedded" in (calib, evaluation) or calib is None
    bundled = embedded_model(source_sha256) if needs_embedded else None
    if calib is None:
        if bundled is None:
            raise OptionError(f"{model_name} is not one of the bundled models, so it needs calibration data: "
                              f"`calib` a .npz/.npy of images, a directory of images, or random:N for a "
                              f"random-weight net (`evaluation` then defaults to a held-out part of `calib`)")
        calib = "embedded"
    if "embedded" in (calib, evaluation) and bundled is None:
        raise OptionError(f"'embedded' data exists only for the bundled models, and {model_name} is not one; "
                          f"give `calib` (and `evaluation`) as a .npz/.npy file, a directory of images or random:N")
    if evaluation is None:
        if calib == "embedded":
            return DataPlan(calib, "embedded", "")
        if calib.startswith("random"):
            return DataPlan(calib, "random", "no `evaluation`: the proof runs on seeded N(0, 1) images disjoint from "
                                              "the calibration ones")
        return DataPlan(calib, None, "no `evaluation`: the proof runs on a seeded quarter of `calib` held out from "
                                      "calibration")
    return DataPlan(calib, evaluation)


def eval_count(spec: str, min_agreement: float) -> str:
    """random without N gets enough images for the agreement gate."""
    if spec == "random":
        return f"random:{max(64, min_eval_images(min_agreement))}"
    return spec


def load_proof_data(plan: DataPlan, loaded, *, min_agreement: float, calib_limit: int, eval_limit: int,
                    crop_fraction: float) -> tuple[Dataset, Dataset, list[str]]:
    """(calibration, evaluation, proof notes) for `loaded` (a `PlainArtifact` or `OnnxArtifact`), preprocessed
    as its provenance records.

    Raises:
        OptionError: unreadable data, evaluation images that are calibration images, too few of them for a
            `min_agreement` gate, or labels beyond the model's classes.
    """
    prov = loaded.provenance
    kw = dict(mean=None if prov.mean is None else list(prov.mean), std=None if prov.std is None else list(prov.std),
              source_sha256=prov.source_sha256, crop_fraction=crop_fraction)
    if plan.evaluation is None:
        cal, ev = holdout_split(load_data(plan.calib, loaded.input_shape, role="calib",
                                          limit=4 * (calib_limit + eval_limit), **kw))
        if len(cal) > calib_limit:
            cal = Dataset(cal.x[:calib_limit], None, f"{cal.source}, first {calib_limit}")
        if len(ev) > eval_limit:
            ev = Dataset(ev.x[:eval_limit], None if ev.labels is None else ev.labels[:eval_limit],
                         f"{ev.source}, first {eval_limit}")
    else:
        cal = load_data(plan.calib, loaded.input_shape, role="calib", limit=calib_limit, **kw)
        ev = load_data(eval_count(plan.evaluation, min_agreement), loaded.input_shape, role="eval",
                       limit=eval_limit, **kw)
    notes = [plan.note] if plan.note else []
    if ev.labels is not None and len(ev.labels) and int(ev.labels.max()) >= loaded.num_classes:
        raise OptionError(f"`evaluation`: a label of {int(ev.labels.max())} for a model with {loaded.num_classes} classes; "
                          f"labels are class indices 0..{loaded.num_classes - 1}")
    overlap = image_overlap(cal.x, ev.x)
    if overlap == len(ev):
        raise OptionError(f"every one of the {len(ev)} evaluation images is also a calibration image: a proof on "
                          f"the images the artifact was calibrated on proves nothing about others; give a held-out "
                          f"`evaluation` set, or leave `evaluation` out to hold out part of `calib`")
    if overlap:
        notes.append(f"{overlap} of the {len(ev)} evaluation images are also calibration images")
    need = min_eval_images(min_agreement)
    if len(ev) < need:
        raise OptionError(f"the proof would run on {len(ev)} images, where one disagreement is "
                          f"{1 / len(ev):.1%}: a {min_agreement:.0%} agreement gate needs at least {need}; give "
                          f"more held-out images (`evaluation`, or a larger `calib` to hold out from) or lower "
                          f"`min_agreement` to {1 - 1 / len(ev):.3f} or less")
    return cal, ev, notes
