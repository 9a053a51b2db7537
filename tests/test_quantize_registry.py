"""quantize.registry: one table of recipes, read by `quantize` and `bench --precision` alike."""

from dirac_deploy.bench.lowp import rows_for
from dirac_deploy.quantize import METHODS, PRECISIONS, TARGETS
from dirac_deploy.quantize.registry import DEFAULT_METHOD, DEFAULT_TARGET, RECIPES, recipes_for
from dirac_deploy.quantize.run import COMBINATIONS


def test_quantize_and_bench_read_the_same_table():
    assert set(RECIPES) == COMBINATIONS
    rows = rows_for(PRECISIONS)
    assert [(p, m, t) for _, p, m, t in rows] == list(RECIPES)
    assert len({name for name, *_ in rows}) == len(rows)  # every bench row has its own name
    assert rows_for(("fp16",)) == [("fp16-onnxruntime", "fp16", "cast", "onnxruntime")]


def test_every_precision_and_target_has_one_default_the_command_line_can_name():
    pairs = {(r.precision, r.target) for r in RECIPES.values()}
    assert set(DEFAULT_METHOD) == pairs  # one default method per (precision, target), no more
    assert all((p, t) in pairs for p, t in DEFAULT_TARGET.items())
    assert {r.precision for r in RECIPES.values()} == set(PRECISIONS)
    assert {r.method for r in RECIPES.values()} <= set(METHODS) and {r.target for r in RECIPES.values()} <= set(TARGETS)
    assert [r.row for r in recipes_for(("bf16",))] == ["bf16-openvino"]
