"""What every command module shares: consoles, options, progress, output.

Heavy libraries are imported inside the commands that need them, never here:
``mlsd --help`` and ``mlsd spec check`` load neither Arrow nor DuckDB.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ..errors import MlsdError

if TYPE_CHECKING:
    from rich.table import Table

    from ..runtime import Project


def rich_table(title: str, **kwargs: Any) -> Table:
    """A Rich table, titled on the left; rich.table and rich.progress load
    here, when a command prints one, not at start-up (30 ms of `spec check`)."""
    from rich.table import Table

    return Table(title=title, title_justify="left", **kwargs)


def _width(stream) -> int | None:
    # Piped output is not cut at 80 columns: tables stay readable in logs.
    return None if stream.isatty() else int(os.environ.get("COLUMNS", "120"))


# markup off: data (reasons, file names, messages) may hold square brackets
out = Console(highlight=False, markup=False, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, markup=False, width=_width(sys.stderr))

def _no_type_for_flags() -> None:
    """Typer 0.29's help shows `<bool>` beside every flag (its own --help too),
    as if a flag took a value; a flag has no value type to show."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_mlsd", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._mlsd = True
    TyperOption.display_type_rich = display_type_rich


_no_type_for_flags()

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="The spec file (default: mlsd.yaml here or in a parent).",
    dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
NoWaitOpt = Annotated[bool, typer.Option(
    "--no-wait", help="Fail at once, naming the holder, when another mlsd process "
    "is writing the lake (default: wait for it, saying so).")]


def lock_policy(no_wait: bool) -> None:
    """This process's answer to a busy lake: wait (saying who holds it, on
    stderr) or fail at once (``--no-wait``)."""
    from ..lake._locks import configure

    configure(wait=not no_wait, on_wait=lambda msg: err.print(msg, style="yellow"))
SourceArg = Annotated[str, typer.Argument(help="A source name from mlsd.yaml.")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="Model id (or its start), an alias (champion), or a model "
    "folder (default: serve.model in mlsd.yaml, else the champion, else the "
    "latest).")]
TrustOpt = Annotated[bool, typer.Option(
    "--trust-unregistered", help="Load a model folder that no project catalog "
    "records (its files cannot be checked against the digest saved with it).")]


def group(help: str, **kwargs: Any) -> typer.Typer:
    """A command group (``mlsd spec ...``); without a name it adds its commands
    to the root instead."""
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(help=help, add_completion=False, **kwargs)


def project(config: Path | None) -> Project:
    """The project of ``-c FILE``, or of the nearest ``mlsd.yaml``."""
    from ..runtime import Project

    return Project.find(spec=config) if config else Project.find()


def known_source(proj: Project, source: str) -> str:
    if source not in proj.spec.sources:
        raise MlsdError(f"unknown source {source!r}; sources are "
                        f"{', '.join(proj.spec.sources)}")
    return source


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, default=str) + "\n")


def emit(result: Any, as_json: bool, show: Callable[[Any], None]) -> None:
    """Print a command's result: as JSON for scripts, else as ``show`` draws it."""
    if as_json:
        print_json(result)
    else:
        show(result)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


class RichReporter:
    """Run progress on stderr: live bars on a terminal, plain lines else.

    Steps nest: a stage's own steps (one per source in ``ingest``) show under
    the stage, and in plain output each finished step is one line, indented
    by its depth.
    """

    def __init__(self, console: Console):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column

        self.console = console
        self.live = console.is_terminal
        # the stage names are never cut: their column is as wide as the longest
        # (see stage()); the note gives way on a narrow terminal, cut with "…"
        self._names = Column(no_wrap=True, min_width=8)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", style="bold", markup=False,
                       table_column=self._names),
            BarColumn(bar_width=24),
            MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[note]}", markup=False, table_column=Column(
                no_wrap=True, overflow="ellipsis", min_width=0)),
            console=console, disable=not self.live)
        self._steps: list[dict[str, Any]] = []

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[RichReporter]:
        depth = len(self._steps)
        label = "  " * depth + name
        self._names.min_width = max(self._names.min_width or 0, len(label))
        task = self.progress.add_task(label, total=total, note="")
        step = {"task": task, "note": ""}
        self._steps.append(step)
        started = time.perf_counter()
        try:
            yield self
        finally:
            self._steps.pop()
            secs = time.perf_counter() - started
            done = self.progress.tasks[task].completed or 1
            self.progress.update(task, total=done, completed=done)
            if not self.live:
                note = f": {step['note']}" if step["note"] else ""
                self.console.print(f"{'  ' * depth}{name} ({secs:.1f}s){note}")

    def advance(self, n: int = 1) -> None:
        if self._steps:
            self.progress.advance(self._steps[-1]["task"], n)

    def note(self, text: str) -> None:
        if self._steps:
            self._steps[-1]["note"] = text
            self.progress.update(self._steps[-1]["task"], note=text)
