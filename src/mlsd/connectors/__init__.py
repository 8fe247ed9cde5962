"""Connectors: where data lives, to Arrow record batches in bounded chunks.

A connector lists its inputs (with content hashes, for lineage and idempotent
loads) and streams them as raw batches from :mod:`mlsd.formats`. The spine has the
file connector (a path or glob) and the SQL connector (a table or query, read
in server-side chunks, incrementally by a watermark) and the REST connector
(JSON pages, paginated, with retries and a rate limit); brokers plug in with
the same shape. A folder of unstructured files (text, images) becomes a
table of their descriptions, the bytes kept in the lake's blob area by hash.
"""

from ._blobs import BlobConnector, copy_blob, image_size, prune_blobs
from ._files import FileConnector, FileInfo, sha256_file
from ._rest import RestConnector
from ._sql import SqlConnector, WatermarkRange

__all__ = ["BlobConnector", "FileConnector", "FileInfo", "RestConnector",
           "SqlConnector", "WatermarkRange", "copy_blob", "image_size", "prune_blobs",
           "sha256_file"]
