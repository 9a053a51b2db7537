"""A hostile and careless user at the command line: malformed checkpoints, plain files and options.

Every case must end with one line on stderr, exit status 1 (2 for click's own usage errors), no traceback,
nothing written, and the input unchanged.
"""

import contextlib
import hashlib
import os
import random
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dirac_deploy import fold_checkpoint
from dirac_deploy.cli import main

import reference

pytestmark = pytest.mark.hostile


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/dirac-deploy-pwned",))


class Custom:
    pass


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _params(seed=1):
    return reference.define_params("cifar", 10, 0.5, seed=seed)


def _save(obj, path, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    d = tmp_path_factory.mktemp("plain")
    _save(reference.as_flat_params(_params()), d / "ckpt.pt7")
    fold_checkpoint(d / "ckpt.pt7", d / "plain.pth")
    return torch.load(d / "plain.pth", weights_only=True)


def _checkpoints(d: Path, plain: dict) -> dict:
    """name -> (file, fragment of the one error line)."""
    cases = {}

    def ckpt(name, mutate, fragment, legacy=False):
        p = _params()
        obj = reference.as_flat_params(p)
        mutate(obj["params"])
        cases[name] = (_save(obj, d / f"{name}.pt7", legacy), fragment)

    ckpt("alpha-str", lambda p: p.__setitem__("group0.block0.alpha", "one"), "group0.block0.conv.alpha is a str")
    ckpt("alpha-none", lambda p: p.__setitem__("group0.block0.alpha", None), "group0.block0.conv.alpha is a NoneType")
    ckpt("int-weights", lambda p: p.__setitem__("group1.block0.conv", p["group1.block0.conv"].long()),
         "int64 tensor")
    ckpt("bool-weights", lambda p: p.__setitem__("fc.weight", p["fc.weight"] > 0), "bool tensor")
    ckpt("complex-weights", lambda p: p.__setitem__("conv", p["conv"].to(torch.complex64)), "complex64 tensor")
    ckpt("meta-tensor", lambda p: p.__setitem__("conv", torch.empty(8, 3, 3, 3, device="meta")), "meta tensor")
    ckpt("sparse-tensor", lambda p: p.__setitem__("fc.weight", p["fc.weight"].to_sparse()), "sparse tensor")
    with warnings.catch_warnings():  # quantized tensor creation is deprecated, and still what old files hold
        warnings.simplefilter("ignore")
        ckpt("quantized", lambda p: p.__setitem__("conv", torch.quantize_per_tensor(p["conv"], 0.1, 0, torch.qint8)),
             "quantized tensor")
    ckpt("stride0-huge", lambda p: p.__setitem__("conv", torch.zeros(1).expand(80000, 80000, 3, 3)),
         "stride-0 view")

    def negative_var(p):
        key = next(k for k in p if k.endswith("running_var"))
        p[key] = p[key].clone()
        p[key][0] = -0.5

    def huge_weight(p):
        p["group0.block0.conv"] = p["group0.block0.conv"].clone()
        p["group0.block0.conv"].view(-1)[0] = 3e38

    ckpt("negative-variance", negative_var, "a batch-norm variance is never negative")
    ckpt("huge-weight", huge_weight, "magnitude 3e+38")
    for kind, payload, fragment in (("os-system", Evil(), "posix.system"), ("custom-class", Custom(), "Custom"),
                                    ("eval", eval, "eval")):
        for legacy in (False, True):
            obj = reference.as_flat_params(_params())
            obj["extra"] = payload
            name = f"unsafe-{kind}{'-legacy' if legacy else ''}"
            cases[name] = (_save(obj, d / f"{name}.pt7", legacy), "--trust-checkpoint")

    # A zip bomb: torch.save's archive with its entries deflated, one of them padded with zeros.
    good = _save(reference.as_flat_params(_params()), d / "good.pt7")
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(d / "bomb.pt7", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data/0"):
                data += b"\0" * (64 << 20)
            dst.writestr(info.filename, data)
    cases["zip-bomb"] = (d / "bomb.pt7", "zip bomb")
    # A flipped byte inside a stored tensor: the CRC check catches it.
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size > 64)
    name_len, extra_len = (int.from_bytes(raw[info.header_offset + o:info.header_offset + o + 2], "little")
                           for o in (26, 28))  # the local header's own lengths (torch pads its extra field)
    raw[info.header_offset + 30 + name_len + extra_len + 8] ^= 0x40
    (d / "crc.pt7").write_bytes(bytes(raw))
    cases["crc-mismatch"] = (d / "crc.pt7", "CRC")

    def plain_case(name, mutate, fragment, restamp=True):
        """A plain file edited by `mutate`; `restamp`: with its content digest recomputed, as a deliberate
        attacker would (the checks behind the digest must hold on their own)."""
        obj = {**plain, "meta": dict(plain["meta"]), "layers": [dict(x, args=dict(x["args"])) for x in plain["layers"]],
               "state_dict": dict(plain["state_dict"])}
        mutate(obj)
        if restamp and isinstance(obj["meta"], dict):
            from dirac_deploy.artifacts.plain import content_sha256

            with contextlib.suppress(TypeError, ValueError, KeyError):  # too broken to digest: the reader says so
                obj["meta"]["content_sha256"] = content_sha256(obj["layers"], obj["meta"], obj["state_dict"])
        cases[name] = (_save(obj, d / f"{name}.pth"), fragment)

    def scaled(o):
        key = next(k for k in o["state_dict"] if k.endswith("weight"))
        o["state_dict"][key] = o["state_dict"][key] * 1.5

    plain_case("weights-scaled", scaled, "was edited after it was built", restamp=False)
    plain_case("source-forged", lambda o: o["meta"].__setitem__("source", {"file": "other.pt7", "sha256": "0" * 64}),
               "was edited after it was built", restamp=False)
    plain_case("layer-twice", lambda o: o["layers"].insert(1, dict(o["layers"][0])), "appear more than once")

    plain_case("meta-list", lambda o: o.__setitem__("meta", [1, 2]), "'meta' is a list")
    plain_case("input-size-str", lambda o: o["meta"].__setitem__("input_size", "abc"), "input_size 'abc'")
    plain_case("input-size-neg", lambda o: o["meta"].__setitem__("input_size", -5), "input_size -5")
    plain_case("input-size-huge", lambda o: o["meta"].__setitem__("input_size", 100000), "input_size 100000")
    plain_case("arch-str", lambda o: o["meta"].__setitem__("architecture", "x"), "meta['architecture'] is a str")
    plain_case("mean-short", lambda o: o["meta"].__setitem__("mean", [0.5]), "meta['mean']")
    plain_case("layer-huge", lambda o: o["layers"][0]["args"].__setitem__("out_channels", 10**7),
               "out_channels = 10000000")
    plain_case("layer-mismatch", lambda o: o["layers"][0]["args"].__setitem__("out_channels", 9),
               "declares weight [9, 3, 3, 3]")
    return cases


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, plain):
    d = tmp_path_factory.mktemp("hostile")
    return d, _checkpoints(d, plain)


COMMANDS = {"fold": lambda src, out: ["fold", str(src), "-o", str(out / "p.pth")],
            "inspect": lambda src, _out: ["inspect", str(src)],
            "inspect-layers": lambda src, _out: ["inspect", str(src), "--layers"],
            "export": lambda src, out: ["export", str(src), "--onnx", str(out / "m.onnx")]}


def _assert_one_line(res, fragment=None, code=1):
    assert res.exit_code == code, (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    if fragment:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_malformed_files_fail_with_one_line_and_write_nothing(bad_files, tmp_path, command):
    d, cases = bad_files
    for name, (src, fragment) in cases.items():
        if command in ("fold", "inspect") and src.suffix == ".pth" and name not in ("meta-list", "layer-huge"):
            continue  # plain files: fold/inspect refuse them for being plain (tested elsewhere)
        out = tmp_path / name
        out.mkdir()
        before = _sha(src)
        res = CliRunner().invoke(main, COMMANDS[command](src, out))
        if command in ("fold", "inspect") and src.suffix == ".pth":
            fragment = None
        _assert_one_line(res, fragment)
        assert list(out.iterdir()) == [], name
        assert _sha(src) == before, name
    assert not Path("/tmp/dirac-deploy-pwned").exists()


def test_random_byte_flips_never_crash(tmp_path):
    src = _save(reference.as_flat_params(_params(seed=4)), tmp_path / "src.pt7")
    data = src.read_bytes()
    rng = random.Random(0)
    for i in range(30):
        raw = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        f = tmp_path / f"flip{i}.pt7"
        f.write_bytes(bytes(raw))
        out = tmp_path / f"out{i}.pth"
        res = CliRunner().invoke(main, ["fold", str(f), "-o", str(out)])
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        if res.exit_code != 0:
            _assert_one_line(res)
            assert not out.exists()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    return _save(reference.as_flat_params(_params(seed=2)), d / "model.pt7")


@pytest.mark.parametrize("args, fragment, code", [
    (["--mean", "1,2"], "--mean has 2 value(s)", 1),
    (["--std", "0,0,0"], "all > 0", 1),
    (["--std", "nan"], "finite numbers", 2),
    (["--bn-eps", "inf"], "bn-eps", 2),
    (["--bn-eps", "nan"], "bn-eps", 1),
    (["--input-size", "1000000"], "input-size", 2),
])
def test_bad_option_values_are_refused(good, tmp_path, args, fragment, code):
    res = CliRunner().invoke(main, ["fold", str(good), "-o", str(tmp_path / "p.pth"), *args])
    assert res.exit_code == code and fragment in res.stderr, res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert not (tmp_path / "p.pth").exists()


def test_an_input_size_too_small_for_the_pooling_is_one_line(tmp_path):
    src = _save(reference.as_flat_params(reference.define_params("imagenet", 18, 0.25, seed=1)), tmp_path / "i.pt7")
    res = CliRunner().invoke(main, ["fold", str(src), "-o", str(tmp_path / "p.pth"), "--input-size", "8"])
    _assert_one_line(res, "too small for its pooling")
    assert not (tmp_path / "p.pth").exists()


def test_file_names_over_255_bytes(good, tmp_path):
    res = CliRunner().invoke(main, ["fold", str(tmp_path / ("x" * 300 + ".pt7")), "-o", str(tmp_path / "p.pth")])
    _assert_one_line(res, "File name too long")
    res = CliRunner().invoke(main, ["fold", str(good), "-o", str(tmp_path / ("y" * 300 + ".pth"))])
    _assert_one_line(res, "at most 255 bytes")
    long_ok = tmp_path / ("z" * 250 + ".pth")  # 254 bytes: a legal name, and the temp file must fit too
    assert CliRunner().invoke(main, ["fold", str(good), "-o", str(long_ok)]).exit_code == 0 and long_ok.exists()


def test_export_validates_every_output_before_writing_any(good, tmp_path):
    def run(*args):
        return CliRunner().invoke(main, ["export", str(good), "--onnx", str(tmp_path / "t1.onnx"), *args])

    (tmp_path / "afile").write_text("x")
    for args, fragment in ((["--triton-repo", str(tmp_path / "nodir" / "sub" / "repo")], "does not exist"),
                           (["--triton-repo", str(tmp_path / "repo"), "--name", "a/b"], "bad model name"),
                           (["--triton-repo", str(tmp_path / "afile")], "not a directory"),
                           (["--opset", "99"], "opset 99 is not supported"),
                           (["--batch-range", "1:100000:100000"], "bad batch range"),
                           (["--fp16"], "--fp16")):
        _assert_one_line(run(*args), fragment)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"], args


def test_export_never_overwrites_its_input_through_the_triton_repository(good, tmp_path):
    assert CliRunner().invoke(main, ["export", str(good), "--triton-repo", str(tmp_path / "repo2"), "--name",
                                     "x"]).exit_code == 0
    target = tmp_path / "repo2" / "x" / "1" / "model.onnx"
    before = _sha(target)
    res = CliRunner().invoke(main, ["export", str(target), "--triton-repo", str(tmp_path / "repo2"), "--name", "x"])
    _assert_one_line(res, "is the input file")
    assert _sha(target) == before


def test_hidden_file_names_give_a_usable_default_model_name(good, tmp_path):
    hidden = tmp_path / ".hidden.pt7"
    hidden.write_bytes(good.read_bytes())
    res = CliRunner().invoke(main, ["export", str(hidden), "--triton-repo", str(tmp_path / "repo")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "repo" / "hidden" / "config.pbtxt").exists()


def test_bench_and_demo_option_errors(good, tmp_path):
    res = CliRunner().invoke(main, ["bench", str(good), "--batch", "1000000000"])
    assert res.exit_code == 2 and "1..1024" in res.stderr
    res = CliRunner().invoke(main, ["bench", str(good), "--json", str(tmp_path / "x"), "--plot", str(tmp_path / "x")])
    assert res.exit_code == 2 and "same file" in res.stderr and not (tmp_path / "x").exists()
    (tmp_path / "f").write_text("keep")
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "f")])
    _assert_one_line(res, "is not a directory")
    assert (tmp_path / "f").read_text() == "keep"


def test_trusted_unpickling_still_works_behind_the_flag(tmp_path):
    obj = reference.as_flat_params(_params())
    obj["extra"] = Custom()
    src = _save(obj, tmp_path / "c.pt7")
    res = CliRunner().invoke(main, ["fold", str(src), "-o", str(tmp_path / "p.pth")])
    _assert_one_line(res, "--trust-checkpoint")
    res = CliRunner().invoke(main, ["fold", str(src), "-o", str(tmp_path / "p.pth"), "--trust-checkpoint"])
    assert res.exit_code == 0 and (tmp_path / "p.pth").exists()


def test_bf16_weights_are_read_with_a_note(tmp_path):
    obj = reference.as_flat_params({k: (v.bfloat16() if v.is_floating_point() else v) for k, v in _params().items()})
    src = _save(obj, tmp_path / "bf.pt7")
    res = CliRunner().invoke(main, ["fold", str(src), "-o", str(tmp_path / "p.pth")])
    assert res.exit_code == 0 and "bfloat16 were read as float32 (exact)" in res.stdout, res.output


def test_json_equal_to_an_input_names_the_option(good, tmp_path):
    res = CliRunner().invoke(main, ["fold", str(good), "-o", str(tmp_path / "p.pth"), "--json", str(good)])
    _assert_one_line(res, "--json: output")
    assert not (tmp_path / "p.pth").exists()


def test_an_already_quantized_onnx_is_refused_before_any_work(tmp_path):
    """Round four: `quantize q.onnx --method naive` on an int8 artifact made ONNX Runtime's quantizer spin for
    minutes; it is refused as soon as the file is read."""
    import time

    from dirac_deploy import data

    q = tmp_path / "q.onnx"
    res = CliRunner().invoke(main, ["quantize", str(data.embedded_checkpoint()), "-o", str(q), "--target",
                                    "tensorrt"])
    assert res.exit_code == 0, res.output
    for method in ("naive", "identity"):
        t0 = time.monotonic()
        res = CliRunner().invoke(main, ["quantize", str(q), "-o", str(tmp_path / f"qq-{method}.onnx"), "--method",
                                        method, "--min-speedup", "0"])
        _assert_one_line(res, "is already quantized")
        assert time.monotonic() - t0 < 30 and not (tmp_path / f"qq-{method}.onnx").exists()
