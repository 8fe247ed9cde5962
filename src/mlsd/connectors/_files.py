"""The file connector: a path or glob inside the project, read with a format."""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..errors import DataError
from ..formats import (
    DEFAULT_CHUNK_ROWS,
    format_for,
    read_csv,
    read_csv_header,
    read_jsonl,
    read_jsonl_columns,
)


@dataclass(frozen=True)
class FileInfo:
    """One input file: its path (as given, relative to the project), sha256, size."""

    path: str
    sha256: str
    size: int


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


class FileConnector:
    """Reads the files a source names (one path or a glob) as raw Arrow batches.

    Parameters
    ----------
    path : str
        File path or glob, relative to ``root`` (or absolute).
    root : Path
        The project folder.
    format : str, optional
        ``csv`` or ``jsonl``; by default from each file's extension.
    delimiter, encoding : str
        CSV settings.
    """

    supports_streaming = True

    def __init__(self, *, path: str, root: Path, format: str | None = None,
                 delimiter: str = ",", encoding: str = "utf-8"):
        self.path = path
        self.root = root
        self.format = format
        self.delimiter = delimiter
        self.encoding = encoding

    def _resolve(self) -> list[Path]:
        pattern = Path(self.path)
        full = pattern if pattern.is_absolute() else self.root / pattern
        if glob.has_magic(str(pattern)):
            found = sorted(Path(p) for p in glob.glob(str(full), recursive=True))
            found = [p for p in found if p.is_file()]
            if not found:
                raise DataError(f"{self.path}: no file matches this pattern")
            return found
        if not full.exists():
            raise DataError(f"{self.path}: no such data file (looked in {full})")
        if full.is_dir():
            raise DataError(f"{self.path}: is a folder, expected a file or a glob")
        return [full]

    def _display(self, p: Path) -> str:
        try:
            return p.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(p)

    def files(self) -> list[FileInfo]:
        """The files behind the source, each with its sha256 and size."""
        out = []
        for p in self._resolve():
            size = p.stat().st_size
            if size == 0:
                raise DataError(f"{self._display(p)}: the file is empty")
            out.append(FileInfo(self._display(p), sha256_file(p), size))
        return out

    def columns(self) -> list[str]:
        """The field names of the first file (CSV header, or JSONL keys)."""
        first = self._resolve()[0]
        fmt = format_for(first, self.format)
        if fmt == "csv":
            return read_csv_header(first, delimiter=self.delimiter,
                                   encoding=self.encoding)
        return read_jsonl_columns(first, encoding=self.encoding)

    def read(
        self, columns: list[str], *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
        strict: bool = True, required: list[str] | None = None,
    ) -> Iterator[tuple[FileInfo, pa.RecordBatch]]:
        """Yield ``(file, raw batch)`` pairs; batches hold ``columns`` as text.

        With ``strict`` (for loads) a CSV header must hold exactly ``columns``
        (any order) and a JSONL record no other field; otherwise a
        :class:`DataError` names the missing and the unexpected ones. Without it
        (for scoring) other fields are ignored and absent ones are null, but the
        ``required`` columns must be in the header.
        """
        for info in self.files():
            p = self.root / info.path if not Path(info.path).is_absolute() else Path(
                info.path)
            fmt = format_for(p, self.format)
            if fmt == "csv":
                header = read_csv_header(p, delimiter=self.delimiter,
                                         encoding=self.encoding)
                missing = [c for c in columns if c not in header]
                extra = [c for c in header if c not in columns]
                if not strict:
                    extra = []
                    missing = [c for c in missing if c in (required or [])]
                if missing or extra:
                    parts = []
                    if missing:
                        parts.append(f"missing column(s) {missing}")
                    if extra:
                        parts.append(f"unexpected column(s) {extra}")
                    raise DataError(
                        f"{info.path}, line 1: the header does not match the "
                        f"schema: {'; '.join(parts)} (edit the schema file if the "
                        f"data changed on purpose)"
                    )
                present = [c for c in columns if c in header]
                for batch in read_csv(p, delimiter=self.delimiter,
                                      encoding=self.encoding, chunk_rows=chunk_rows):
                    out = batch.select([*present, "_line", "_raw", "_error"])
                    for c in columns:
                        if c not in header:
                            out = out.append_column(c, pa.nulls(out.num_rows,
                                                                pa.string()))
                    yield info, out
            else:
                for batch in read_jsonl(p, columns=columns, encoding=self.encoding,
                                        chunk_rows=chunk_rows, strict=strict):
                    yield info, batch
