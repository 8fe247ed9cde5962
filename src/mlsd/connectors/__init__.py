"""Connectors: where data lives, to Arrow record batches in bounded chunks.

A connector lists its inputs (with content hashes, for lineage and idempotent
loads) and streams them as raw batches from :mod:`mlsd.formats`. The spine has the
file connector; databases, REST APIs and brokers plug in with the same shape.
"""

from ._files import FileConnector, FileInfo, sha256_file

__all__ = ["FileConnector", "FileInfo", "sha256_file"]
