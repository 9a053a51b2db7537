"""Safe file output: atomic writes, refusing to overwrite inputs, content hashes."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import CheckpointError, OutputPathError

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_file_kind(path: str | Path) -> str:
    """What kind of model file `path` is, from its first bytes: "torch" (zip or legacy pickle), "onnx",
    "openvino-ir" (an OpenVINO IR's .xml, as `quantize --target openvino` writes) "tflite" (a LiteRT program) or "pte" (an ExecuTorch
    program, as `export --pte` writes).

    Raises:
        CheckpointError: missing, unreadable, empty, HDF5 (convert it first) or something else.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise CheckpointError(f"no such file: {str(path)[:300]}")
        if not path.is_file():
            raise CheckpointError(f"not a file: {path}")
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:  # names over 255 bytes, permissions, ...
        raise CheckpointError(f"cannot read {str(path)[:300]}: {e.strerror}") from None
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes); not a checkpoint")
    if head.startswith(_HDF5_MAGIC):
        raise CheckpointError(f"{path} is an HDF5 file (the released DiracNet v1 .hkl files are); convert it to "
                              f".pth first with converters/hkl_to_pth.py")
    if head.startswith(_ZIP_MAGIC) or head[:1] == b"\x80":
        return "torch"
    if path.suffix.lower() == ".xml" and head.startswith((b"<?xml", b"<net")):
        return "openvino-ir"
    # An ExecuTorch program is a flatbuffer whose file identifier ("ET" and a schema version) follows its root offset.
    if head[4:6] == b"ET" and head[6:8].isdigit():
        return "pte"
    # A LiteRT (TFLite) model is a flatbuffer with the file identifier "TFL3".
    if head[4:8] == b"TFL3":
        return "tflite"
    # An ONNX ModelProto starts with field 1 (ir_version, a varint): tag byte 0x08.
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":
        return "onnx"
    raise CheckpointError(f"{path} is not a PyTorch checkpoint or an ONNX model: it starts with {head[:8]!r}, expected a "
                          f"zip archive (torch.save), a legacy torch pickle, an ONNX model, an OpenVINO IR (.xml), an "
                          f"ExecuTorch program (.pte) or a LiteRT program (.tflite)")


def referenced_files(path: str | os.PathLike) -> list[Path]:
    """The files a model file reads besides itself: an OpenVINO IR's weights (.bin beside the .xml), an ONNX
    model's external-data files. Read without loading any tensor; [] for anything else or unreadable. A command
    checks each output against its inputs: the ONNX is parsed once per file version, not once per output."""
    path = Path(path)
    try:
        if not path.is_file():
            return []
        if path.suffix.lower() == ".xml":
            return [path.with_suffix(".bin")]
        st = path.stat()
    except OSError:
        return []
    return list(_onnx_locations(str(path.resolve()), st.st_mtime_ns, st.st_size, str(path)))


@functools.lru_cache(maxsize=64)
def _onnx_locations(_resolved: str, _mtime_ns: int, _size: int, given: str) -> tuple[Path, ...]:
    path = Path(given)
    try:
        with open(path, "rb") as f:
            head = f.read(1)
        if path.suffix.lower() != ".onnx" and head != b"\x08":
            return ()
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX after all, or unreadable: the reader says why, later
        return ()
    locations = {entry.value for t in model.graph.initializer if t.data_location == 1  # TensorProto.EXTERNAL
                 for entry in t.external_data if entry.key == "location"}
    return tuple(path.parent / loc for loc in sorted(locations))


def check_not_input(out: str | os.PathLike, *inputs: str | os.PathLike) -> Path:
    """Refuse an output that is one of the inputs or a file an input reads (`referenced_files`: an IR's .bin,
    an ONNX model's external data), also through `..`, symlinks and hard links."""
    out = Path(out)
    if len(out.name.encode()) > 255:
        raise OutputPathError(f"cannot write {out.name[:40]}...: a file name is at most 255 bytes, this one is "
                              f"{len(out.name.encode())}")
    inputs = tuple(inputs) + tuple(ref for inp in inputs for ref in referenced_files(inp))
    for inp in inputs:
        inp = Path(inp)
        try:
            same = out.resolve() == inp.resolve() or (out.exists() and inp.exists() and os.path.samefile(out, inp))
        except OSError as e:
            raise OutputPathError(f"cannot use {str(out)[:300]} as an output: {e.strerror}") from None
        if same:
            raise OutputPathError(f"output {out} is the input file {inp}; choose another output path (inputs, and "
                                  f"the files they read, are never overwritten)")
    return out


def check_output_path(out: str | os.PathLike, *inputs: str | os.PathLike) -> Path:
    """Refuse an output that is one of the inputs or whose directory does not exist."""
    out = check_not_input(out, *inputs)
    if not out.parent.resolve().is_dir():
        raise OutputPathError(f"cannot write {out}: directory {out.parent} does not exist")
    if out.is_dir():
        raise OutputPathError(f"cannot write {out}: it is a directory; give a file path")
    return out


def _temp_beside(path: Path) -> Path:
    # The temp name must fit in NAME_MAX (255 bytes) whatever the output's own length: hash long names.
    stem = path.name if len(path.name.encode()) <= 200 else hashlib.sha256(path.name.encode()).hexdigest()[:16]
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.", suffix=".tmp")
    except OSError as e:
        raise OutputPathError(f"cannot write {path}: {e.strerror}") from None
    os.close(fd)
    return Path(tmp)


def _publish(tmp: Path, path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
    os.replace(tmp, path)


# Inside `transaction()`: the staged (temp, target) pairs and the directories made for them, published together
# when the transaction ends. Outside one, each `write_all` publishes its own files at once.
_TRANSACTION: contextvars.ContextVar[tuple[list[tuple[Path, Path]], list[Path]] | None] = contextvars.ContextVar(
    "dirac_deploy_output_transaction", default=None)


def staged_file(target: str | os.PathLike) -> Path:
    """Where `target`'s new bytes are now: inside a `transaction()`, the temp file staged for it (the target
    itself is published only when the transaction ends); else the target."""
    target = Path(target)
    tx = _TRANSACTION.get()
    if tx is not None:
        for tmp, path in reversed(tx[0]):
            if path == target:
                return tmp
    return target


@contextlib.contextmanager
def transaction():
    """Every file written inside (by `write_all`, `atomic_write`, `write_with_dirs`, at any depth) is staged and
    published only when the block ends without an error, all together (with `write_all`'s undo if a rename
    fails). A command's artifacts and its `--json` report are one transaction: either all land, or none."""
    if _TRANSACTION.get() is not None:  # nested: the outer one publishes
        yield
        return
    staged: list[tuple[Path, Path]] = []
    made: list[Path] = []
    token = _TRANSACTION.set((staged, made))
    try:
        yield
        _TRANSACTION.reset(token)
        token = None
        _publish_all(staged)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for d in reversed(made):
            with contextlib.suppress(OSError):  # not empty (someone else wrote there): leave it
                d.rmdir()
        raise
    finally:
        if token is not None:
            _TRANSACTION.reset(token)


Writer = Callable[[Path], object]  # writes one output into the temporary path it is given


def write_all(writes: dict[Path, Writer]) -> list[Path]:
    """Write several outputs all or nothing: every `write(tmp)` runs on a temp file beside its target first,
    and only when all succeeded are they renamed into place. On any error every temp file is removed and no
    target is touched; if a rename itself fails (a target that cannot be replaced), the targets already
    replaced get their previous contents back (or are removed if they did not exist)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in writes.items():
            path = Path(path)
            tmp = _temp_beside(path)
            staged.append((tmp, path))
            write(tmp)
        tx = _TRANSACTION.get()
        if tx is not None:  # published with the rest of the transaction
            tx[0].extend(staged)
            return [path for _, path in staged]
        _publish_all(staged)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return [path for _, path in staged]


def _publish_all(staged: list[tuple[Path, Path]]) -> None:
    """Rename every temp file over its target; undo the ones done when one fails."""
    done: list[tuple[Path, Path | None]] = []  # (target, backup of its previous contents or None)
    try:
        for tmp, path in staged:
            backup = None
            if path.is_file() and len(staged) > 1:  # one output alone needs no undo: os.replace is atomic
                backup = _temp_beside(path)
                try:
                    os.replace(path, backup)
                except BaseException:
                    backup.unlink(missing_ok=True)  # the empty placeholder mkstemp made: never left behind
                    raise
            try:
                _publish(tmp, path)
            except BaseException:
                if backup is not None:
                    os.replace(backup, path)
                raise
            done.append((path, backup))
    except BaseException as e:
        failed = path
        for path, backup in reversed(done):
            if backup is not None:
                os.replace(backup, path)
            else:
                path.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputPathError(f"cannot write {failed}: {e.strerror or e}; nothing was changed") from None
        raise
    for _, backup in done:
        if backup is not None:
            backup.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Writer) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`.

    Readers never see a half-written file, and on any error the temporary file is removed and `path` is
    untouched.
    """
    return write_all({Path(path): write})[0]


def write_with_dirs(writes: dict[Path, Writer]) -> list[Path]:
    """`write_all`, creating missing parent directories first and removing the ones it created on failure."""
    created: list[Path] = []
    try:
        for path in writes:
            missing = [d for d in reversed(Path(path).parents) if not d.exists()]
            for d in missing:
                try:
                    d.mkdir()
                except OSError as e:
                    raise OutputPathError(f"cannot create directory {d}: {e.strerror}") from None
                created.append(d)
        written = write_all(writes)
        tx = _TRANSACTION.get()
        if tx is not None:  # removed again if the transaction fails
            tx[1].extend(created)
        return written
    except BaseException:
        for d in reversed(created):
            with contextlib.suppress(OSError):  # not empty (someone else wrote there): leave it
                d.rmdir()
        raise
