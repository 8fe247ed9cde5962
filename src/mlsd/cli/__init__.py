"""The ``mlsd`` command: a thin face over :mod:`mlsd.pipeline` and the stages.

One module per command group (``_run``: init, run, ingest, stages; ``_spec``;
``_schema``; ``_lake``: lake, sql, export; ``_quarantine``; ``_models``: models,
lineage, predict, serve; ``_features``: features prune; ``_audit``;
``_sample``: sample; ``_label``: label), registered
on the root here. Results go to stdout (``--json`` for scripts), progress and
logs to stderr. Exit codes: 0 done, 1 the job ran and found a problem asked to
fail on, 2 bad input or usage (every :class:`mlsd.errors.MlsdError` is printed
as one line of text, never a traceback). Heavy libraries load only inside the
commands that use them.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from .. import __version__
from ..errors import MlsdError
from . import (
    _audit,
    _features,
    _label,
    _lake,
    _models,
    _quarantine,
    _run,
    _sample,
    _schema,
    _spec,
)
from ._common import err, out

__all__ = ["app", "main"]

app = typer.Typer(
    name="mlsd",
    help="ML system design: from raw data to a served model, every step traceable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# commands at the root, then the groups
for commands in (_run.app, _models.top, _lake.top, _audit.app, _sample.top):
    app.add_typer(commands)
app.add_typer(_spec.app, name="spec")
app.add_typer(_schema.app, name="schema")
app.add_typer(_quarantine.app, name="quarantine")
app.add_typer(_lake.app, name="lake")
app.add_typer(_models.app, name="models")
app.add_typer(_features.app, name="features")
app.add_typer(_label.app, name="label")


def _version(value: bool) -> None:
    if value:
        out.print(f"mlsd {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version.")] = False) -> None:
    """mlsd: ML system design, data first."""


def main() -> None:
    """Console entry point: run the app, turn mlsd errors into exit code 2.

    The process ends with ``os._exit`` once the output is flushed: the native
    thread pools of Arrow, DuckDB and delta-rs can abort the interpreter's own
    teardown ("terminate called without an active exception", exit -6; see
    apache/arrow#34314, delta-io/delta-rs#2184) after the work is done, which
    would turn a finished command into a failure.
    """
    # pydantic looks for plugins in every installed package's metadata when
    # the first model is built (30 ms of start-up); the command needs none.
    # Only the mlsd process is touched, and a user's own setting wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")
    code = 0
    try:
        app()
    except SystemExit as done:
        if isinstance(done.code, int):
            code = done.code
        elif done.code is not None:
            err.print(str(done.code))
            code = 1
    except MlsdError as e:
        err.print("error:", style="bold red", end=" ")
        err.print(str(e), soft_wrap=True)
        code = 2
    except KeyboardInterrupt:
        err.print("interrupted")
        code = 130
    except Exception:  # a bug: show it whole, then exit like Python would
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away (| head)
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
