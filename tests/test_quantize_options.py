"""`quantize` on a user's own model: which data calibrates and which proves, every option checked before any
fold or export, the proof's caveats (eval == calib, too few images, the SQNR floor), and the messages."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dirac_deploy import data
from dirac_deploy.cli import main
from dirac_deploy.quantize.data import holdout_split, load_data, resize_crop
from dirac_deploy.quantize.proof_data import min_eval_images

from reference import as_flat_params, define_params

DIGITS = data.embedded_checkpoint()


def _quantize(*args):
    """The speed gate off: these tests are about options and data (the gate: test_quantize_speed)."""
    return CliRunner().invoke(main, ["quantize", *map(str, args), "--min-speedup", "0"])


@pytest.fixture(scope="module")
def user_ckpt(tmp_path_factory):
    """A user's own checkpoint: a random-weight CIFAR DiracNet-10 in the original train.py layout."""
    path = tmp_path_factory.mktemp("user") / "mine.pt7"
    torch.save(as_flat_params(define_params("cifar", 10, seed=3)), path)
    return path


@pytest.fixture
def no_fold(monkeypatch):
    """Any fold or export from here on fails the test: the options must be refused before."""
    for module in ("dirac_deploy.bench.models", "dirac_deploy.export.from_file", "dirac_deploy.layer_analysis"):
        importlib.import_module(module)  # they bind load_model at import: imported first, they keep the real one

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr("dirac_deploy.opener.open_artifact", boom)


def _files(path):
    return sorted(p.name for p in path.iterdir())


def test_user_model_without_calib_is_told_what_to_give_before_any_fold(tmp_path, user_ckpt, no_fold):
    res = _quantize(user_ckpt, "-o", tmp_path / "q.onnx")
    assert res.exit_code == 1 and "not one of the bundled models" in res.output and "--calib" in res.output
    assert "Traceback" not in res.output and _files(tmp_path) == []
    res = _quantize(user_ckpt, "-o", tmp_path / "q.onnx", "--calib", "embedded")
    assert res.exit_code == 1 and "only for the bundled models" in res.output


def test_bad_options_fail_before_any_fold(tmp_path, no_fold):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "one.png")
    cases = [(["--calib", "random:0"], "N must be in 1..100000"),
             (["--calib", "random:x"], "random:N with N a whole number"),
             (["--eval", str(tmp_path / "one.png")], "a single image cannot"),
             (["--json", str(tmp_path / "nodir" / "r.json")], "does not exist"),
             (["--json", str(DIGITS)], "is the input file"),
             (["--min-sqnr-db", "nan"], "finite"),
             (["-o", str(tmp_path / "q.txt")], "written as .onnx"),
                 (["-o", str(tmp_path / "q.onnx"), "--speed-batch", "0"], "--speed-batch"),
             (["--precision", "fp16", "--target", "openvino"], "fp16 is built for --target onnxruntime")]
    for extra, needle in cases:
        res = _quantize(DIGITS, "-o", tmp_path / "q.onnx", *extra)
        assert res.exit_code != 0 and needle in res.output, (extra, res.output)
        assert "Traceback" not in res.output and "--method none" not in res.output
    assert _files(tmp_path) == ["one.png"]


def test_eval_that_is_the_calibration_data_is_refused(tmp_path, user_ckpt):
    x = np.random.default_rng(0).standard_normal((200, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "calib.npy", x)
    np.save(tmp_path / "copy.npy", x)
    res = _quantize(user_ckpt, "-o", tmp_path / "q.onnx", "--calib", tmp_path / "calib.npy", "--eval",
                    tmp_path / "calib.npy")
    assert res.exit_code == 1 and "is the calibration data" in res.output
    res = _quantize(user_ckpt, "-o", tmp_path / "q.onnx", "--calib", tmp_path / "calib.npy", "--eval",
                    tmp_path / "copy.npy")  # another file, the same images
    assert res.exit_code == 1 and "also a calibration image" in res.output
    assert _files(tmp_path) == ["calib.npy", "copy.npy"]


def test_too_few_evaluation_images_for_the_agreement_gate_are_refused(tmp_path, user_ckpt):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.standard_normal((64, 3, 32, 32)).astype(np.float32))
    np.save(tmp_path / "eval.npy", rng.standard_normal((20, 3, 32, 32)).astype(np.float32))
    res = _quantize(user_ckpt, "-o", tmp_path / "q.onnx", "--calib", tmp_path / "calib.npy", "--eval",
                    tmp_path / "eval.npy")
    assert res.exit_code == 1 and "on 20 images" in res.output and "needs at least 100" in res.output
    assert not (tmp_path / "q.onnx").exists()
    assert min_eval_images(0.99) == 100 and min_eval_images(0.95) == 20 and min_eval_images(1.0) == 1


def test_calib_alone_holds_out_a_quarter_for_the_proof(tmp_path, user_ckpt):
    x = np.random.default_rng(0).standard_normal((400, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "calib.npy", x)
    res = _quantize(user_ckpt, "-o", tmp_path / "q.onnx", "--calib", tmp_path / "calib.npy", "--min-agreement",
                    "0.5", "--min-sqnr-db", "0", "--json", tmp_path / "q.json")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "q.json").read_text())
    proof = report["proof"]
    assert proof["images"] == 100 and "held-out part" in proof["data"]
    assert "calibration part" in report["calibration"] and "256" in report["calibration"]  # 300 left, limit 256
    assert any("held out from calibration" in n for n in proof["notes"])
    assert report["cpu"]["summary"] and any("proved on" in n for n in proof["notes"])
    res = _quantize(user_ckpt, "-o", tmp_path / "q2.onnx", "--calib", tmp_path / "calib.npy", "--min-agreement",
                    "0.5", "--min-sqnr-db", "0")
    assert "held out from calibration" in res.output and "stay fp32" in res.output


def test_the_default_sqnr_floor_is_recorded_and_enforced(tmp_path):
    res = _quantize(DIGITS, "-o", tmp_path / "q.onnx", "--precision", "int8", "--json", "-")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["proof"]["min_sqnr_db"] == 15.0


def test_holdout_split_is_disjoint_and_seeded():
    from dirac_deploy.quantize.data import Dataset

    ds = Dataset(np.arange(40, dtype=np.float32).reshape(40, 1, 1, 1), np.arange(40), "x")
    cal, ev = holdout_split(ds)
    assert len(ev) == 10 and len(cal) == 30
    assert not set(cal.labels) & set(ev.labels) and set(cal.labels) | set(ev.labels) == set(range(40))
    np.testing.assert_array_equal(holdout_split(ds)[1].x, ev.x)


def test_images_are_resized_by_the_shorter_side_and_centre_cropped():
    img = np.zeros((1, 1, 40, 80), np.float32)
    img[..., :, 16:64] = 1.0  # a centred 40x48 block; squashing would pull the black sides in
    out = resize_crop(torch.as_tensor(img), (32, 32), crop_fraction=1.0)
    assert out.shape == (1, 1, 32, 32) and float(out.min()) > 0.99
    same = torch.rand(1, 3, 32, 32)
    assert resize_crop(same, (32, 32)) is same  # already at the input size: untouched


def test_image_folder_labels_come_from_sorted_class_names(tmp_path):
    from PIL import Image

    for cls, value in (("dog", 200), ("cat", 50)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((48, 64, 3), value, np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = load_data(str(tmp_path), (3, 32, 32), mean=[0.5] * 3, std=[0.25] * 3)
    assert ds.x.shape == (6, 3, 32, 32) and list(ds.labels) == [0, 0, 0, 1, 1, 1]
    assert "cat=0, dog=1" in ds.source
    assert abs(float(ds.x[0].mean()) - (50 / 255 - 0.5) / 0.25) < 1e-3


def _npy_with_header(path, shape, dtype="<f4", payload=b""):
    """A .npy whose header declares `shape` over `payload` (no real array of that size is ever made)."""
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(payload)
    return path


def test_calibration_files_from_strangers_are_one_line_before_they_are_loaded(tmp_path):
    """Each case fails with one line naming the file, without loading what the file declares."""
    import zipfile

    from PIL import Image

    good = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "ok.npz", images=good)
    blob = bytearray((tmp_path / "ok.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "crc.npz").write_bytes(bytes(blob))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:900])
    (tmp_path / "notzip.npz").write_bytes(b"hello, not a zip archive")
    np.savez(tmp_path / "objects.npz", images=np.array([{"a": 1}, None], dtype=object))
    _npy_with_header(tmp_path / "huge.npy", (100_000_000, 3, 32, 32))
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.write(_npy_with_header(tmp_path / "member.npy", (100_000_000, 3, 32, 32)), "images.npy")
    np.savez(tmp_path / "flat.npz", images=np.zeros((4, 0, 32, 3), np.uint8))
    np.savez(tmp_path / "strlabels.npz", images=good, labels=np.array(["cat"] * 8))
    np.savez(tmp_path / "nanlabels.npz", images=good, labels=np.full(8, np.nan))
    np.savez(tmp_path / "biglabels.npz", images=np.repeat(good, 13, axis=0), labels=np.full(104, 10))
    (tmp_path / "zero.npy").write_bytes(b"")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3, 32, 32), np.float32))
    (tmp_path / "random.npy").write_bytes(np.random.default_rng(1).bytes(500))
    folder = tmp_path / "bomb"
    folder.mkdir()
    Image.new("1", (12000, 12000)).save(folder / "bomb.png")
    ppm = tmp_path / "ppm"
    ppm.mkdir()
    (ppm / "zero.ppm").write_bytes(b"P6\n2 2\n0\n" + bytes(12))
    cases = {"crc.npz": "corrupt", "cut.npz": "corrupt", "notzip.npz": "corrupt", "objects.npz": "Python objects",
             "huge.npy": "truncated", "huge.npz": "GiB", "flat.npz": "no pixels", "strlabels.npz": "whole numbers",
             "nanlabels.npz": "whole numbers", "empty.npy": "no images", "random.npy": "not a readable",
             "biglabels.npz": "10 classes", "zero.npy": "not a readable",
             "bomb": "cannot read image", "ppm": "cannot read image"}
    for name, needle in cases.items():
        res = _quantize(DIGITS, "-o", tmp_path / "q.onnx", "--eval", tmp_path / name)
        assert res.exit_code == 1 and needle in res.output, (name, res.output)
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output, (name, res.output)
    assert not (tmp_path / "q.onnx").exists()


def test_the_proof_runs_on_at_most_eval_limit_images(tmp_path):
    res = _quantize(DIGITS, "-o", tmp_path / "q.onnx", "--eval", "random:100000", "--eval-limit", "150",
                    "--min-agreement", "0.5", "--max-accuracy-drop", "100", "--min-sqnr-db", "0", "--json", "-")
    assert res.exit_code == 0, res.output
    proof = json.loads(res.output)["proof"]
    assert proof["images"] == 150
    assert all(layer["output_sqnr_db"] is not None for layer in proof["layers"])  # on its first 64 images


def _skimage_photos(folder, classes: dict[str, list[str]]):
    """Real photographs and scans from scikit-image's bundled data (RGB, grayscale, RGBA, JPEG, odd sizes and
    aspect ratios) copied into a torchvision ImageFolder layout; skimage itself is not imported."""
    import importlib.util
    import shutil
    from pathlib import Path

    spec = importlib.util.find_spec("skimage")
    if spec is None:
        pytest.skip("scikit-image is not installed (the test extra brings it)")
    src = Path(list(spec.submodule_search_locations)[0]) / "data"
    for cls, names in classes.items():
        (folder / cls).mkdir(parents=True)
        for name in names:
            shutil.copy(src / name, folder / cls / name)
    return folder


def test_calibration_from_a_folder_of_real_photographs(user_ckpt, tmp_path):
    """F11: the image-folder path on real photographs: every mode (RGB, L, RGBA, JPEG) and shape (300x451 to
    1411x1411, 191x384 pages) resized on the shorter side and centre-cropped, labels from sorted folder names,
    and a user's checkpoint quantized with them (calibration and a disjoint held-out folder)."""
    calib = _skimage_photos(tmp_path / "calib", {"animal": ["chelsea.png", "horse.png"],
                                                "object": ["coffee.png", "rocket.jpg", "logo.png"],
                                                "person": ["astronaut.png", "camera.png", "page.png"]})
    held = _skimage_photos(tmp_path / "held", {"animal": ["motorcycle_left.png"], "object": ["color.png", "coins.png"],
                                              "person": ["retina.jpg", "moon.png", "text.png", "brick.png"]})
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ds = load_data(str(calib), (3, 32, 32), mean=mean, std=std, role="calib")
    assert ds.x.shape == (8, 3, 32, 32) and ds.x.dtype == np.float32 and np.isfinite(ds.x).all()
    assert list(ds.labels) == [0, 0, 1, 1, 1, 2, 2, 2] and "animal=0, object=1, person=2" in ds.source
    gray = ds.x[6] * np.array(std, np.float32)[:, None, None] + np.array(mean, np.float32)[:, None, None]
    np.testing.assert_allclose(gray[0], gray[1], atol=1e-6)  # camera.png: grayscale, the same in R, G and B
    assert gray.min() >= 0.0 and gray.max() <= 1.0
    # the photographs differ from each other (no image was replaced by a blank or a constant)
    assert len({round(float(x.mean()), 3) for x in ds.x}) == 8 and all(float(x.std()) > 0.05 for x in ds.x)
    # naive int8: every conv quantized, whatever this random-weight net's SQNR (the identity method's loop moves
    # its layers to fp32 here, and an artifact with nothing in int8 is refused): the data path is under test
    out = tmp_path / "q.onnx"
    res = _quantize(user_ckpt, "-o", out, "--method", "naive", "--calib", calib, "--eval", held, "--mean", ",".join(map(str, mean)),
                    "--std", ",".join(map(str, std)), "--min-agreement", "0", "--max-accuracy-drop", "100",
                    "--min-sqnr-db", "0", "--json", tmp_path / "q.json")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "q.json").read_text())
    assert doc["proof"]["images"] == 7 and "labels from sorted folder names" in doc["calibration"]
    assert out.is_file()
