"""Where a lake's files live when it is not a local folder: object storage
(``s3://bucket/prefix``, ``gs://``, ``abfs://``), by URL. Tested against
S3 (moto); Google Cloud Storage and Azure through the same two libraries.

Delta commits go through ``deltalake`` (its Rust object store), the files mlsd
writes or checks itself (Parquet parts, a damaged file's size) through
pyarrow's file system for the same URL. Both read their credentials from the
environment as the cloud's own tools do (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, and ``AWS_ENDPOINT_URL`` with
``AWS_ALLOW_HTTP=true`` for an S3-compatible store on plain HTTP such as MinIO):
nothing secret is written in mlsd.yaml.
"""

from __future__ import annotations

import os
import re
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import LakeError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

SCHEMES = ("s3", "s3a", "gs", "abfs", "abfss")  # both deltalake and pyarrow take them
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$")
_fs_cache: dict[str, pafs.FileSystem] = {}
_fs_lock = threading.Lock()


def is_url(location: object) -> bool:
    """Whether a lake location is an object store's URL (not a local path)."""
    return isinstance(location, str) and "://" in location


def check_url(url: str) -> str:
    """``url`` without a trailing slash if it names a bucket (and a prefix)
    of a store mlsd can write a lake to, else a LakeError that says why."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise LakeError(f"lake url {url!r}: the scheme must be one of "
                        f"{', '.join(s + '://' for s in SCHEMES)}")
    if not parts.netloc:
        raise LakeError(f"lake url {url!r} names no bucket (s3://bucket/prefix)")
    if parts.query or parts.fragment:
        raise LakeError(f"lake url {url!r}: no query or fragment; credentials come "
                        f"from the environment (AWS_ACCESS_KEY_ID, ...)")
    segments = [s for s in parts.path.split("/") if s]
    bad = [s for s in segments if not _SEGMENT.match(s) or ".." in s]
    if bad:
        raise LakeError(f"lake url {url!r}: {bad[0]!r} is not a plain folder name")
    return f"{parts.scheme}://{parts.netloc}" + "".join("/" + s for s in segments)


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system for an object store URL (one per bucket, made
    once: an S3 client costs milliseconds) and the location as its path."""
    import pyarrow.fs as pafs

    parts = urlsplit(location)
    base = f"{parts.scheme}://{parts.netloc}"
    with _fs_lock:
        fs = _fs_cache.get(base)
        if fs is None:
            try:
                fs, _ = pafs.FileSystem.from_uri(base.replace("s3a://", "s3://", 1))
            except OSError as err:  # S3: the bucket's region is asked first
                import socket

                first = str(err).strip().splitlines()[0][:300]
                raise LakeError(
                    f"the lake's store {base} cannot be reached from "
                    f"{socket.gethostname()} ({first}); check the store's "
                    f"endpoint and credentials in the environment "
                    f"(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                    f"AWS_REGION); on Spark, the executors are given the driver's, "
                    f"but a Spark Connect server's executors need their own"
                ) from None
            _fs_cache[base] = fs
    return fs, (parts.netloc + parts.path).rstrip("/")


def locate(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The file system of a location (a store's URL, a ``file://`` URI, a
    local path) and its path there: one way to write, read and remove files
    whether the lake is a folder or object storage."""
    location = str(location)
    if is_url(location) and not location.startswith("file://"):
        return filesystem(location)
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem(), location.removeprefix("file://")


def make_dirs(location: str | os.PathLike) -> None:
    """A folder for files to be written in (a store has no folders: none)."""
    if not is_url(str(location)):
        os.makedirs(str(location).removeprefix("file://"), exist_ok=True)


def remove(location: str | os.PathLike) -> None:
    """Remove a file, or a folder and what it holds (on a store: every
    object under the prefix); nothing if it is not there. Cleaning up
    scratch files: an error is not raised."""
    import pyarrow.fs as pafs

    try:
        fs, path = locate(location)
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.File:
            fs.delete_file(path)
        elif kind == pafs.FileType.Directory:
            fs.delete_dir(path)
    except (OSError, LakeError):  # the store gone meanwhile: said elsewhere
        pass


# what the stores' clients read from the environment (pyarrow's and
# deltalake's), by URL scheme
_ENVIRONMENT = {"s3": ("AWS_",), "s3a": ("AWS_",), "gs": ("GOOGLE_", "GCS_"),
                "abfs": ("AZURE_",), "abfss": ("AZURE_",)}


def store_environment(url: str | None) -> dict[str, str]:
    """The variables of this process's environment that a store's clients
    read for ``url`` (credentials, region, endpoint): what Spark's executors
    are given so that their tasks reach the same store as the driver."""
    if url is None or not is_url(url):
        return {}
    prefixes = _ENVIRONMENT.get(urlsplit(url).scheme, ())
    return {k: v for k, v in os.environ.items() if k.startswith(prefixes)}


def check_store(url: str) -> None:
    """Refuse a lake URL whose bucket does not exist or whose store cannot
    be reached, in one line naming it (deltalake's own error is the store's
    XML reply, after its retries)."""
    try:
        fs, base = filesystem(url)
        bucket = base.split("/", 1)[0]
        kind = fs.get_file_info(bucket).type
    except OSError as err:
        first = str(err).strip().splitlines()[0][:300]
        raise LakeError(f"the lake at {url} cannot be reached ({first}); check "
                        f"AWS_ENDPOINT_URL and the credentials in the environment "
                        f"(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)"
                        ) from None
    import pyarrow.fs as pafs

    if kind == pafs.FileType.NotFound:
        raise LakeError(f"the lake at {url}: the store has no bucket {bucket!r} "
                        f"(create it, or correct lake.url)")


def relative(rel: str) -> str:
    """A file path the Delta log names inside a table, refused if it would
    leave the table (``..``, absolute, a URL)."""
    if "://" in rel or rel.startswith("/") or any(
            p in ("", ".", "..") for p in rel.split("/")):
        raise LakeError(f"file {rel!r} is not inside its table")
    return rel
