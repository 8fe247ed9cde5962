"""Connectors: where data lives, to Arrow record batches in bounded chunks.

A connector lists its inputs (with content hashes, for lineage and idempotent
loads) and streams them as raw batches from :mod:`mlsd.formats`. The spine has the
file connector (a path or glob) and the SQL connector (a table or query, read
in server-side chunks, incrementally by a watermark) and the REST connector
(JSON pages, paginated, with retries and a rate limit); a broker queue or
stream (RabbitMQ, Redis) is read by `mlsd consume` in micro-batches. A folder
of unstructured files (text, images) becomes a table of their descriptions,
the bytes kept in the lake's blob area by hash.
"""

from .._lazy import attach

# each kind loads on first use: reading a Parquet file imports neither
# SQLAlchemy nor httpx (0.2 s of `mlsd audit`)
_WHERE = {
    "KafkaTopic": "_brokers", "Message": "_brokers", "RabbitQueue": "_brokers",
    "RedisStream": "_brokers",
    "open_broker": "_brokers",
    "BlobConnector": "_blobs", "copy_blob": "_blobs", "image_size": "_blobs",
    "prune_blobs": "_blobs",
    "FileConnector": "_files", "FileInfo": "_files", "sha256_file": "_files",
    "RestConnector": "_rest",
    "SqlConnector": "_sql", "WatermarkRange": "_sql",
}
__getattr__, __dir__ = attach(__name__, _WHERE)

__all__ = ["BlobConnector", "FileConnector", "FileInfo", "KafkaTopic", "Message",
           "RabbitQueue",
           "RedisStream", "RestConnector", "SqlConnector", "WatermarkRange",
           "copy_blob", "image_size", "open_broker", "prune_blobs", "sha256_file"]
