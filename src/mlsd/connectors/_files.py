"""The file connector: a path or glob inside the project, read with a format."""

from __future__ import annotations

import glob
import hashlib
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa

from ..errors import DataError
from ..formats import (
    DEFAULT_CHUNK_ROWS,
    FORMATS,
    RESERVED,
    FormatOptions,
    delimiter_hint,
    format_for,
    get_format,
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


def admit(paths: list[Path], display: str, roots: list[Path] | None) -> list[Path]:
    """``paths``, once each is a regular file (not a device, pipe or socket:
    ``/dev/zero`` would be read without end) and, when ``roots`` is given,
    inside one of them after links are followed (``../../etc/passwd`` and
    links pointing out of the project are refused)."""
    allowed = [r.resolve() for r in roots] if roots is not None else None
    for p in paths:
        try:
            mode = p.stat().st_mode
        except OSError as err:
            raise DataError(f"{display}: cannot read {p}: {err.strerror}") from None
        if not stat.S_ISREG(mode):
            raise DataError(f"{display}: {p} is not a regular file (a device, a "
                            f"pipe or a socket): refused")
        if allowed is not None:
            real = p.resolve()
            if not any(real == r or r in real.parents for r in allowed):
                raise DataError(
                    f"{display}: {p} is outside the project folder ({allowed[0]}): "
                    f"a source reads files inside it; list another folder in "
                    f"`data_roots` in mlsd.yaml to allow it")
    return paths


class FileConnector:
    """Reads the files a source names (one path or a glob) as raw Arrow batches.

    Parameters
    ----------
    path : str
        File path or glob, relative to ``root`` (or absolute).
    root : Path
        The project folder.
    format : str, optional
        A format name (see :data:`mlsd.formats.FORMAT_CLASSES`); by default from
        each file's extension.
    options : FormatOptions, optional
        Reader settings (CSV delimiter, Avro reader schema, .proto file, ...).
    """

    supports_streaming = True

    def __init__(self, *, path: str, root: Path, format: str | None = None,
                 options: FormatOptions | None = None,
                 roots: list[Path] | None = None):
        self.path = path
        self.root = root
        self.format = format
        self.options = options or FormatOptions()
        # where the files may be (the project and its `data_roots`); None for
        # a file named on the command line, which may be anywhere
        self.roots = roots

    @property
    def display(self) -> str:
        """The source as the spec names it."""
        return self.path

    def _resolve(self) -> list[Path]:
        pattern = Path(self.path)
        full = pattern if pattern.is_absolute() else self.root / pattern
        if glob.has_magic(str(pattern)):
            found = sorted(Path(p) for p in glob.glob(str(full), recursive=True))
            found = [p for p in found if p.is_file()]
            if not found:
                raise DataError(f"{self.path}: no file matches this pattern")
            return admit(found, self.path, self.roots)
        if not full.exists():
            raise DataError(f"{self.path}: no such data file (looked in {full})")
        if full.is_dir():
            # a partitioned folder: every data file below it, in a stable order
            found = sorted(p for p in full.rglob("*") if p.is_file()
                           and p.suffix.lower() in FORMATS
                           and not any(part.startswith((".", "_")) for part in
                                       p.relative_to(full).parts))
            if not found:
                raise DataError(f"{self.path}: the folder holds no data file "
                                f"({', '.join(sorted(FORMATS))})")
            self._folder = full
            return admit(found, self.path, self.roots)
        return admit([full], self.path, self.roots)

    def paths(self) -> list[Path]:
        """The files the source names now (no hashing, unlike :meth:`files`)."""
        return self._resolve()

    def partitions(self, p: Path) -> dict[str, str]:
        """Hive-style ``key=value`` folders between the source folder and a file."""
        folder = getattr(self, "_folder", None)
        if folder is None:
            return {}
        out = {}
        for part in p.parent.relative_to(folder).parts:
            key, eq, value = part.partition("=")
            if eq and key:
                out[key] = unquote(value)
        return out

    def partition_keys(self) -> list[str]:
        """The partition columns, from the first file's folders."""
        files = self._resolve()
        return list(self.partitions(files[0])) if files else []

    def _display(self, p: Path) -> str:
        try:
            return p.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(p)

    def files(self, hashes: Callable[[list[Path]], list[str]] | None = None
              ) -> list[FileInfo]:
        """The files behind the source, each with its sha256 and size.
        ``hashes``: what computes the files' sha256 (default: one after the
        other, here; a Spark engine hashes many files at once)."""
        paths = self._resolve()
        for p in paths:
            if p.stat().st_size == 0:
                raise DataError(f"{self._display(p)}: the file is empty")
        digests = hashes(paths) if hashes is not None and len(paths) > 1 else [
            sha256_file(p) for p in paths]
        return [FileInfo(self._display(p), d, p.stat().st_size)
                for p, d in zip(paths, digests, strict=True)]

    def columns(self) -> list[str]:
        """The field names of the first file (CSV header, JSON keys, schema)."""
        first = self._resolve()[0]
        fmt = format_for(first, self.format)
        cols = get_format(fmt).columns(first, self.options)
        if fmt == "csv" and self.options.header and (
                hint := delimiter_hint(cols, self.options.delimiter)):
            raise DataError(f"{self._display(first)}, line 1: {hint}")
        taken = [c for c in cols if c in RESERVED]
        if taken:
            raise DataError(
                f"{self._display(first)}: column(s) {taken} are names mlsd gives "
                f"its own provenance columns; rename them in the file (mlsd export "
                f"writes them as {', '.join('mlsd' + c for c in taken)})")
        return cols + [k for k in self.partition_keys() if k not in cols]

    def arrow_types(self) -> dict | None:
        """Column types the first file declares (binary formats), else None."""
        first = self._resolve()[0]
        return get_format(format_for(first, self.format)).arrow_types(first,
                                                                      self.options)

    def read(
        self, columns: list[str], *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
        strict: bool = True, required: list[str] | None = None,
        only: list[FileInfo] | None = None,
        span: tuple[int | None, int, int] | None = None,
    ) -> Iterator[tuple[FileInfo, pa.RecordBatch]]:
        """Yield ``(file, raw batch)`` pairs holding ``columns``.

        With ``strict`` (for loads) a file must hold exactly ``columns`` (any
        order); otherwise a :class:`DataError` names the missing and the
        unexpected ones. Without it (for scoring) other fields are ignored and
        absent ones are null, but the ``required`` columns must be there.
        ``only`` restricts the read to some of the files (already hashed).
        ``span``: one CSV file's lines between two byte offsets, and the
        first one's number (see :func:`mlsd.formats.read_csv`); the generator
        then returns the number the next line would have.
        """
        after = None
        for info in (self.files() if only is None else only):
            p = Path(info.path)
            p = p if p.is_absolute() else self.root / p
            fmt = get_format(format_for(p, self.format))
            parts = self.partitions(p)
            have = fmt.columns(p, self.options) + list(parts)
            missing = [c for c in columns if c not in have]
            extra = [c for c in have if c not in columns]
            if not strict:
                extra = []
                missing = [c for c in missing if c in (required or [])]
            elif fmt.name in ("jsonl", "json"):
                # records vary: a record with unknown fields is rejected alone,
                # and fields absent from every record sampled are simply null
                extra, missing = [], []
            if missing or extra:
                hint = delimiter_hint(have, self.options.delimiter) \
                    if fmt.name == "csv" and self.options.header else None
                if hint:
                    raise DataError(f"{info.path}, line 1: {hint}")
                parts = []
                if missing:
                    parts.append(f"missing column(s) {missing}")
                if extra:
                    parts.append(f"unexpected column(s) {extra}")
                where = ", line 1" if fmt.name == "csv" and self.options.header else ""
                raise DataError(
                    f"{info.path}{where}: "
                    f"{'the header does' if where else 'the columns do'} not match "
                    f"the schema: {'; '.join(parts)} (if the data changed on purpose, "
                    f"edit the source's file in schemas/ or run `mlsd schema "
                    f"infer SOURCE` to infer it again)")
            present = [c for c in columns if c in have and c not in parts]
            file_cols = [c for c in have if c not in parts]
            read_cols = file_cols if fmt.name == "csv" else [
                c for c in columns if c not in parts]
            if span is not None and fmt.name not in ("csv", "jsonl", "parquet"):
                raise ValueError(f"{info.path}: only CSV, JSONL and Parquet files "
                                 f"are read in spans")
            source = fmt.read(p, self.options, columns=read_cols,
                              chunk_rows=chunk_rows, strict=strict,
                              **({"span": span} if span is not None else {}))
            while True:
                try:
                    batch = next(source)
                except StopIteration as done:
                    after = done.value
                    break
                for key, value in parts.items():
                    if key in columns:  # the folder's value, as text
                        batch = batch.append_column(key, pa.array(
                            [value] * batch.num_rows, pa.string()))
                if fmt.name == "csv":
                    out = batch.select([*present, *[k for k in parts if k in
                                                    columns],
                                        "_line", "_raw", "_error"])
                    for c in columns:
                        if c not in have:
                            out = out.append_column(c, pa.nulls(out.num_rows,
                                                                pa.string()))
                    batch = out
                yield info, batch
        return after
