"""serving: the table of serving engines `serve --engine` reads; a new one is one module and one row."""

from __future__ import annotations

import sys
import types

import pytest

from dirac_deploy import serving
from dirac_deploy.errors import OptionError


def test_a_toy_serving_engine_is_one_module_and_one_row(monkeypatch):
    seen = []

    def run(request, events):
        seen.append((request.models, request.limits.max_body_bytes, request.engine_options))
        events.started("serving on toy://")
        return True

    module = types.ModuleType("toy_engine")
    module.run = run
    monkeypatch.setitem(sys.modules, "toy_engine", module)
    monkeypatch.setattr(serving, "SERVING_ENGINES", dict(serving.SERVING_ENGINES))
    serving.register(serving.ServingEngine("toy", "a toy", "toy_engine"))
    lines = []
    request = serving.ServeRequest(["m.onnx"], engine_options={"shards": 2})
    assert serving.serve("toy", request, serving.ServeEvents(started=lines.append)) is True
    assert seen == [(["m.onnx"], request.limits.max_body_bytes, {"shards": 2})] and lines == ["serving on toy://"]


def test_an_unknown_engine_is_named_with_the_choices():
    with pytest.raises(OptionError, match="unknown serving engine 'nope'; choose from builtin, ray"):
        serving.serve("nope", serving.ServeRequest(["m.onnx"]))


def test_a_bad_autoscale_range_is_one_line():
    pytest.importorskip("fastapi")
    from dirac_deploy.serve_ray import parse_autoscale

    assert parse_autoscale("1:4") == (1, 4) and parse_autoscale(None) == (None, None)
    for bad in ("4:1", "x", "0:0"):
        with pytest.raises(OptionError, match="expected MIN:MAX"):
            parse_autoscale(bad)
