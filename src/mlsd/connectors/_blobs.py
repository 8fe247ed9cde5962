"""Unstructured data: a folder of files (text, images, anything) as a table.

Each file becomes one row: path, content sha256, size, media type, modification
time and metadata (for text: lines and characters; for PNG, GIF and JPEG images:
width and height). The bytes go to the lake's blob area, stored once per content
hash, and the row refers to them by that hash.
"""

from __future__ import annotations

import json
import mimetypes
import shutil
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import DataError
from ..formats import DEFAULT_CHUNK_ROWS, ERROR, LINE, RAW
from ._files import FileInfo, admit, sha256_file

COLUMNS = ["path", "sha256", "size", "media_type", "modified_at", "metadata"]
TYPES = [pa.string(), pa.string(), pa.int64(), pa.string(),
         pa.timestamp("us", tz="UTC"), pa.string()]


def image_size(head: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG from its first bytes.

    Read by hand from the format headers: a few bytes do not justify an imaging
    library as a dependency.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                return None
            marker = head[i + 1]
            length = struct.unpack(">H", head[i + 2:i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3):
                h, w = struct.unpack(">HH", head[i + 5:i + 9])
                return w, h
            i += 2 + length
    return None


def describe(path: Path) -> tuple[str, dict[str, Any]]:
    """Media type and metadata of one file."""
    media, _ = mimetypes.guess_type(path.name)
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    size = image_size(head)
    if size is not None:
        return media or "image", {"width": size[0], "height": size[1]}
    if media is None or media.startswith("text/") or media.endswith(("json", "xml")):
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            return media or "application/octet-stream", {"encoding": None}
        return media or "text/plain", {"encoding": "utf-8", "chars": len(text),
                                       "lines": text.count("\n") + (
                                           1 if text and not text.endswith("\n")
                                           else 0)}
    return media, {}


class BlobConnector:
    """Reads a folder of files as a table of their descriptions.

    Parameters
    ----------
    folder : str
        The folder, relative to ``root``.
    root : Path
        The project folder.
    pattern : str
        Which files, as a glob below the folder (``**/*`` by default).
    store : callable, optional
        Called with each file's path and sha256 to keep its bytes (the lake's
        blob area).
    """

    supports_streaming = True

    def __init__(self, *, folder: str, root: Path, pattern: str = "**/*",
                 store: Callable[[Path, str], None] | None = None,
                 roots: list[Path] | None = None):
        self.folder = folder
        self.root = root
        self.pattern = pattern
        self.store = store
        self.roots = roots  # as FileConnector's

    @property
    def display(self) -> str:
        return f"{self.folder}/{self.pattern}"

    def _base(self) -> Path:
        base = self.root / self.folder
        if not base.is_dir():
            raise DataError(f"{self.folder}: no such folder (looked in {base})")
        return base

    def _paths(self) -> list[Path]:
        base = self._base()
        return admit(sorted(p for p in base.glob(self.pattern) if p.is_file()
                            and not any(part.startswith(".") for part in
                                        p.relative_to(base).parts)),
                     self.display, self.roots)

    def files(self) -> list[FileInfo]:
        out = []
        for p in self._paths():
            rel = p.relative_to(self.root).as_posix()
            out.append(FileInfo(rel, sha256_file(p), p.stat().st_size))
        if not out:
            raise DataError(f"{self.display}: no file matches")
        return out

    def columns(self) -> list[str]:
        return list(COLUMNS)

    def read(self, columns: list[str], *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
             strict: bool = True, only: list[FileInfo] | None = None,
             required: list[str] | None = None
             ) -> Iterator[tuple[FileInfo, pa.RecordBatch]]:
        """One batch per file (so each row keeps its own file and hash)."""
        for info in (self.files() if only is None else only):
            p = self.root / info.path
            error = None
            try:
                media, meta = describe(p)
                if self.store is not None:
                    self.store(p, info.sha256)
                modified = datetime.fromtimestamp(p.stat().st_mtime, UTC)
            except OSError as err:
                media, meta, modified = None, {}, None
                error = f"unreadable file: {err}"
            row = {"path": info.path, "sha256": info.sha256, "size": info.size,
                   "media_type": media, "modified_at": modified,
                   "metadata": json.dumps(meta, sort_keys=True)}
            arrays = [pa.array([row[c]], t) for c, t in zip(COLUMNS, TYPES,
                                                              strict=True)
                      if c in columns]
            names = [c for c in COLUMNS if c in columns]
            arrays += [pa.array([1], pa.int64()), pa.nulls(1, pa.string()),
                       pa.array([error], pa.string())]
            yield info, pa.RecordBatch.from_arrays(arrays,
                                                   names=[*names, LINE, RAW, ERROR])


def copy_blob(blobs: Path) -> Callable[[Path, str], None]:
    """A ``store`` that keeps each content once under ``blobs/ab/abcdef...``."""
    def store(path: Path, sha256: str) -> None:
        target = blobs / sha256[:2] / sha256
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(target)  # atomic: a crash never leaves half a blob
    return store


def prune_blobs(blobs: Path, keep: set[str]) -> list[str]:
    """Remove the stored contents whose hash is not in ``keep``; return them.

    Called after a vacuum, with the hashes that the files still on disk refer
    to, so a blob goes only once no readable version of any table needs it.
    """
    removed = []
    if not blobs.is_dir():
        return removed
    for sub in sorted(blobs.iterdir()):
        if not sub.is_dir():
            continue
        for blob in sorted(sub.iterdir()):
            if blob.suffix == ".tmp" or blob.name not in keep:
                blob.unlink()
                removed.append(blob.name)
        if not any(sub.iterdir()):
            sub.rmdir()
    return removed
