"""Export a lake dataset version to any format mlsd writes."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from ..errors import LakeError
from ..formats import (
    FORMAT_CLASSES,
    FormatOptions,
    exported_name,
    get_format,
    to_text,
)
from ..lake import AREAS, Lake

EXTENSIONS = {name: cls.extensions[0] for name, cls in FORMAT_CLASSES.items()}
NESTED_OK = {"parquet", "pickle", "jsonl", "json"}


def parse_dataset(name: str) -> tuple[str, str]:
    """``area/name`` (or just a source name) -> (area, name)."""
    if "/" in name:
        area, _, rest = name.partition("/")
        if area not in AREAS:
            raise LakeError(f"unknown lake area {area!r} in {name!r}; expected one "
                            f"of {', '.join(AREAS)}")
        return area, rest
    return "sources", name


def _flat(table: pa.Table) -> pa.Table:
    """Nested columns (the quarantine's reasons) as JSON text."""
    cols = []
    for f in table.schema:
        col = table.column(f.name)
        if pa.types.is_nested(f.type):
            col = pa.array([to_text(v) for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def export_dataset(lake: Lake, dataset: str, fmt: str, output: Path, *,
                   version: int | None = None, force: bool = False) -> dict:
    """Write one version (the latest by default) of ``dataset`` to ``output``.

    mlsd's own columns (``_source``, ``_line``, ``_load_id``, ``_split``, ...)
    are written as ``mlsd_source``, ``mlsd_line``, ...: the file then reads
    back as a source or an audit input, which add their own provenance. An
    existing file is replaced only with ``force``, and only once the new one
    is whole (written next to it, then renamed). Where the output may go in a
    project is :func:`mlsd.pipeline.export`'s business.
    """
    output = Path(output)
    if output.is_dir():
        raise LakeError(f"--output {output} is a folder: give a file, e.g. "
                        f"{output / ('data' + EXTENSIONS.get(fmt, ''))}")
    if output.exists() and not force:
        raise LakeError(f"--output {output} exists: pass --force to replace it")
    if output.exists() and not output.is_file():
        raise LakeError(f"--output {output} is not a regular file: refused")
    area, name = parse_dataset(dataset)
    table = lake.read(area, name, version=version)
    renamed = {c: exported_name(c) for c in table.column_names
               if exported_name(c) != c}
    table = table.rename_columns([exported_name(c) for c in table.column_names])
    writer = get_format(fmt)
    if fmt not in NESTED_OK:
        table = _flat(table)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".mlsd-partial-{os.getpid()}-{output.name}")
    # a format may write a file beside its output (Protobuf's .proto): named
    # after the partial file, it moves with it
    beside = [partial.with_suffix(s) for s in (".proto",)]
    try:
        writer.write(table, partial, FormatOptions(trusted=True))
        for extra in beside:
            if extra.exists():
                extra.replace(output.with_suffix(extra.suffix))
        partial.replace(output)
    finally:
        for leftover in (partial, *beside):
            leftover.unlink(missing_ok=True)
    used = version if version is not None else lake.version(area, name)
    return {"dataset": f"{area}/{name}", "version": used, "format": fmt,
            "rows": table.num_rows, "output": str(output), "renamed": renamed}
