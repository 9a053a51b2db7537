"""Terminal rendering of library reports (rich), the global -q/-v settings, and --json output."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Settings:
    quiet: bool = False
    verbose: int = 0


def settings() -> Settings:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Settings) if ctx is not None else None
    return obj or Settings()


PIPED_WIDTH = 160  # lines are this wide at most when piped (logs, captured output), unless COLUMNS says otherwise


def _width(stream) -> int | None:
    """None (the terminal's width, or COLUMNS) on a terminal or where COLUMNS is set; else `PIPED_WIDTH`."""
    return None if stream.isatty() or os.environ.get("COLUMNS", "").isdigit() else PIPED_WIDTH


class _TrimmedLines:
    """A text stream that drops the spaces rich pads every line with up to the console's width: piped output
    and logs hold no trailing blanks."""

    def __init__(self, stream):
        self._stream, self._pending = stream, ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        if lines:
            self._stream.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(self._pending)
            self._pending = ""
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8")


def console() -> Console:
    """A console for the current stdout, at most `PIPED_WIDTH` wide when piped, lines without trailing blanks.
    Quiet (-q) prints nothing here."""
    stream = sys.stdout
    return Console(file=_TrimmedLines(stream), highlight=False,  # type: ignore[arg-type]  # a write()-er
                   width=_width(stream), quiet=settings().quiet)


def err_console() -> Console:
    """Progress and spinners go to stderr, so stdout stays the command's result (pipeable, --json)."""
    return Console(stderr=True, highlight=False, width=_width(sys.stderr), quiet=settings().quiet)


def progress_status(first: str):
    """A spinner on stderr for long library calls, and a `progress(step)` callback that updates it."""
    status = err_console().status(escape(first))  # messages name user files: text, never markup

    def progress(step: str) -> None:
        status.update(f"{escape(step)} ...")

    return status, progress


def json_option(f):
    return click.option("--json", "json_path", type=click.Path(path_type=Path),
                        help="Also write the report as JSON to this file ('-': stdout, and no table). Schemas: "
                             "docs/reports.md.")(f)


def sign_option(f):
    return click.option("--sign-key", type=click.Path(path_type=Path),
                        help="Sign every artifact written with this Ed25519 private key (PEM): a detached FILE.sig "
                             "beside it, checked by `dirac-deploy verify` and `serve --require-signature`. Make a key "
                             "with: openssl genpkey -algorithm ed25519 -out key.pem")(f)


def sign_written(sign_key: Path | None, written) -> list[Path]:
    """Inside the command's output transaction: a signature beside each artifact it wrote."""
    if sign_key is None:
        return []
    from ..artifacts.signing import sign_outputs

    return sign_outputs([Path(p) for p in written], sign_key)


def outputs_with_report(json_path: Path | None, sign_key: Path | None = None):
    """The context a command runs its library call, its signatures and `emit_json` in: a file transaction when
    the report goes to a file or the artifacts get signatures (all land together or not at all), else nothing."""
    import contextlib

    if sign_key is not None:  # loaded before any work: a wrong path or key type is one line, nothing written
        from ..artifacts.signing import load_private_key

        load_private_key(sign_key)
    if (json_path is None or str(json_path) == "-") and sign_key is None:
        return contextlib.nullcontext()
    from ..fileio import transaction

    return transaction()


def check_json_path(json_path: Path | None, *others) -> None:
    """Refuse a --json path that cannot be written, or that is an input or another output, before any work
    (a report that fails after the artifact was written would break all-or-nothing)."""
    if json_path is None or str(json_path) == "-":
        return
    from ..errors import OutputPathError
    from ..fileio import check_output_path

    try:
        check_output_path(json_path, *[o for o in others if o is not None])
    except OutputPathError as e:  # name the option: "output X" alone reads as the artifact
        raise OutputPathError(f"--json: {e}") from None


def emit_json(json_path: Path | None, payload: dict) -> bool:
    """Write `payload` to `json_path` ('-' is stdout); True when it went to stdout (print nothing else)."""
    if json_path is None:
        return False
    text = json.dumps(payload, indent=1, default=str) + "\n"
    if str(json_path) == "-":
        click.echo(text, nl=False)
        return True
    from ..fileio import atomic_write, check_output_path

    atomic_write(check_output_path(json_path), lambda tmp: tmp.write_text(text))
    return False


def human(n: float, unit: str = "") -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".strip()


def kv_table(title: str, rows: list[tuple[str, str | Text]]) -> Table:
    """Two columns, key and value. Values are text, never markup: they hold paths, file metadata and notes
    such as `[relu(x), 0]` that rich would otherwise read as tags (pass a `Text` to style one)."""
    table = Table(title=Text(title), title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(Text(k), v if isinstance(v, Text) else Text(str(v)))
    return table


def _source(text: str) -> Text:
    if not text or text == "checkpoint":
        return Text("")
    return Text(f" ({text})", style="yellow" if text.startswith("assumed") else "dim")


def _floats(values) -> str:
    """[0.4128, 0.3921, 0.3792]: four significant digits (the full values are in --json and the artifact)."""
    return "[" + ", ".join(f"{v:.4g}" for v in (values or [])) + "]"


def input_rows(shape, mean, std, provenance: dict) -> list[tuple[str, Text]]:
    """Input size and normalization, each marked with where it came from (assumed values stand out)."""
    c, h, w = shape
    return [("input", Text(f"{c}x{h}x{w}") + _source(provenance.get("input_size", ""))),
            ("normalization", Text(f"mean {_floats(mean)}, std {_floats(std)}")
             + _source(provenance.get("normalization", "")))]


def inspect_rows(report) -> list[tuple[str, str]]:
    spec = report.spec
    rows = [("source", f"{report.path}  (sha256 {report.sha256[:12]})"),
            ("layout", f"{report.layout}: {report.layout_description}"),
            ("architecture", spec.name), *spec.summary_rows(folded=report.folded_source),
            *input_rows((spec.in_channels, spec.input_size, spec.input_size), spec.mean, spec.std,
                        report.provenance)]
    if report.folded_source:
        rows.append(("state", "already folded (plain chain)"))
    for note in report.notes:
        rows.append(("note", note))
    return rows
