"""A project for the user's own data: ``mlsd init DIR --from FILE --target COL``.

:func:`init_from` copies the data into the project (or references a SQL table),
infers and freezes its schema, profiles every column, and writes a commented
``mlsd.yaml``: the task read from the target (binary with its positive class,
multiclass, regression), a split that fits the data (time, group, stratified or
random), and a feature entry per column chosen as a careful engineer would, or a
comment saying why the column is left out (row ids, constants, copies of the
target). ``mlsd run`` then works without editing.
"""

from __future__ import annotations

import csv
import glob
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import DataError, MlsdError
from ._propose import Choice, Proposal, propose

CSV_SUFFIXES = (".csv", ".tsv", ".txt")


def init_from(folder: Path, source: str, *, target: str, time: str | None = None,
              key: str | None = None, group: str | None = None,
              task: str | None = None, positive: Any = None,
              table: str | None = None, cwd: Path | None = None,
              command: str = "") -> Proposal:
    """Create project ``folder`` for the data at ``source`` and return what it
    proposed.

    ``source`` is a file or glob (relative to ``cwd``), copied into
    ``folder/data/``, or a SQLAlchemy URL read from ``table`` (referenced, not
    copied). The schema is frozen to ``schemas/NAME.yaml`` and the spec written to
    ``mlsd.yaml``; both are checked by loading them as ``mlsd run`` would.
    """
    from ..etl import save_schema
    from ..spec import load_spec

    folder = Path(folder)
    cwd = Path(cwd or Path.cwd())
    folder.mkdir(parents=True, exist_ok=True)
    if "://" in source:
        if not table:
            raise MlsdError(f"--from {source}: a database needs --table NAME")
        name = _name(table)
        spec: dict[str, Any] = {"url": source, "table": table}
        note = f"table {table} of {_redact(source)}"
    else:
        if table:
            raise MlsdError("--table applies to a database URL, not to files")
        files = _match(source, cwd)
        name, spec = _copy(files, source, folder)
        note = source
    proposal = propose(folder, name, spec, target=target, time=time, key=key,
                       group=group, task=task, positive=positive,
                       name=_name(folder.resolve().name), source_note=note)
    proposal.command = command
    save_schema(folder, name, proposal.schema)
    (folder / "mlsd.yaml").write_text(proposal.yaml(), encoding="utf-8")
    load_spec(folder / "mlsd.yaml")  # what mlsd run will read must be valid
    return proposal


def _name(text: str) -> str:
    """A source or project name from a file, table or folder name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-") or "data"
    return name if name[0].isalnum() else f"d{name}"


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def _match(source: str, cwd: Path) -> list[Path]:
    pattern = Path(source).expanduser()
    full = pattern if pattern.is_absolute() else cwd / pattern
    if glob.has_magic(str(pattern)):
        files = sorted(Path(p) for p in glob.glob(str(full), recursive=True)
                       if Path(p).is_file())
        if not files:
            raise DataError(f"--from {source}: no file matches this pattern")
        return files
    if not full.is_file():
        raise DataError(f"--from {source}: no such file (looked in {full})")
    return [full]


def _copy(files: list[Path], source: str, folder: Path) -> tuple[str, dict]:
    """Copy the files into ``folder/data/``; the source's name and spec."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in files]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"--from {source}: several files are named alike "
                        f"({', '.join(twice)}); gather them in one folder with "
                        f"distinct names first")
    for f in files:
        dest = data / f.name
        if dest.resolve() != f.resolve():
            shutil.copyfile(f, dest)
    if len(files) == 1 and not glob.has_magic(source):
        path, stem = f"data/{files[0].name}", files[0].name.split(".")[0]
    else:
        path = f"data/{Path(source).name}"
        stem = Path(source).parent.name if glob.has_magic(Path(source).name) \
            and Path(source).parent.name not in ("", ".") else files[0].stem
    spec: dict[str, Any] = {"path": path}
    if files[0].suffix.lower() in CSV_SUFFIXES:
        spec.update(sniff_csv(files[0]))
    return _name(stem), spec


def sniff_csv(path: Path) -> dict[str, str]:
    """Reader options a CSV file needs beyond the defaults: its delimiter when it
    is not a comma (the standard library's sniffer on the first 64 KB)."""
    head = path.read_bytes()[: 64 * 1024]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    lines = text.splitlines()[:50]
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # a line cut by the 64 KB read would mislead the vote
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|")
    except csv.Error:
        return {}
    return {} if dialect.delimiter == "," else {"delimiter": dialect.delimiter}


__all__ = ["Choice", "Proposal", "init_from", "propose", "sniff_csv"]
