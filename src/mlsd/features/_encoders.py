"""Pretrained sentence encoders read from a local folder, for ``encode: embedding``.

Two kinds of folder, told apart by their files:

* a **model2vec** static model (``config.json``, ``model.safetensors``,
  ``tokenizer.json``: what ``StaticModel.save_pretrained`` writes), encoded by
  the ``model2vec`` package itself;
* an **ONNX encoder** (``model.onnx`` and the ``tokenizer.json`` it was exported
  with, as sentence-transformers / optimum exports are laid out), run by
  onnxruntime; a token-level output (batch x tokens x dim) is mean-pooled over
  the attention mask, a pooled one (batch x dim) used as it is.

Nothing is downloaded: the folder must hold every file (model2vec would fetch
from the Hugging Face hub for a path that is not a folder, so the hub is turned
off before it is imported). A folder is known by its content hash (the sha256
of its files' names and hashes): the feature state keeps it, a changed folder
is refused, and the artifact carries a copy of the files so it serves without
the project.

Vectors already computed are cached by (content hash, text hash): in memory,
and in a project on disk under ``.mlsd/cache/embeddings/HASH/`` (a re-run, or
scoring text seen in training, encodes nothing again). The mean pooling and
the cache are written here: no library without PyTorch pools ONNX encoder
outputs, and the cache is keyed by mlsd's own hashes.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import MlsdError

MODEL2VEC = ("config.json", "model.safetensors", "tokenizer.json")
ONNX = ("model.onnx", "tokenizer.json")
ONNX_OPTIONAL = ("config.json", "model.onnx_data", "model.onnx.data")
BATCH = 256  # texts per encoder call
MAX_TOKENS = 256  # ONNX encoders: longer texts are cut (model2vec: its config's)
MEMORY_ROWS = 100_000  # vectors kept in memory per encoder before it is emptied
COMPACT_PARTS = 32  # cache files per encoder before they are merged into one


def encoder_format(folder: str | os.PathLike) -> str:
    """``model2vec`` or ``onnx``, from the folder's files; what is missing is
    said otherwise."""
    p = Path(folder)
    if not p.is_dir():
        raise MlsdError(f"{folder}: not a folder")
    if (p / "model.onnx").is_file():
        if not (p / "tokenizer.json").is_file():
            raise MlsdError(f"{folder}: an ONNX encoder needs the tokenizer.json it "
                            f"was exported with next to model.onnx")
        return "onnx"
    missing = [f for f in MODEL2VEC if not (p / f).is_file()]
    if missing:
        raise MlsdError(
            f"{folder}: neither a model2vec folder (lacks {', '.join(missing)}) nor "
            f"an ONNX encoder (model.onnx + tokenizer.json)")
    return "model2vec"


def encoder_files(folder: str | os.PathLike) -> dict[str, str]:
    """The files an encoder reads, by name, with their sha256."""
    from ._text import file_sha256

    p = Path(folder)
    names = (MODEL2VEC if encoder_format(p) == "model2vec"
             else ONNX + tuple(n for n in ONNX_OPTIONAL if (p / n).is_file()))
    return {n: file_sha256(str(p / n)) for n in names}


def content_hash(files: dict[str, str]) -> str:
    """One sha256 over the files' names and hashes."""
    h = hashlib.sha256()
    for name, sha in sorted(files.items()):
        h.update(name.encode() + b"\0" + sha.encode() + b"\n")
    return h.hexdigest()


def folder_hash(folder: str | os.PathLike) -> str:
    """The content hash of an encoder folder."""
    return content_hash(encoder_files(folder))


class Encoder:
    """A loaded encoder: ``vectors(texts)`` gives one float32 row a text (a
    missing or empty text: zeros), through the cache."""

    def __init__(self, folder: str | os.PathLike, sha256: str,
                 cache_dir: str | os.PathLike | None = None):
        self.folder = Path(folder)
        found = folder_hash(self.folder)
        if found != sha256:
            raise MlsdError(
                f"{self.folder}: the encoder's files changed since the features "
                f"were analysed (content hash {found[:12]}, expected {sha256[:12]}); "
                f"run the features stage again")
        self.sha256 = sha256
        self.format = encoder_format(self.folder)
        self._encode = (_model2vec(self.folder) if self.format == "model2vec"
                        else _onnx(self.folder))
        self.cache = _Cache(None if cache_dir is None
                            else Path(cache_dir) / sha256[:16])
        self.dim = int(self._encode(["a"]).shape[1])

    def vectors(self, texts: Sequence[str | None]) -> np.ndarray:
        keys = [None if not t else hashlib.blake2b(t.encode("utf-8", "replace"),
                                                   digest_size=16).digest()
                for t in texts]
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k is not None and k not in todo and not self.cache.has(k):
                todo[k] = t  # type: ignore[assignment]
        if todo:
            new_keys, new_texts = list(todo), list(todo.values())
            made = [self._encode(new_texts[i:i + BATCH])
                    for i in range(0, len(new_texts), BATCH)]
            self.cache.add(new_keys, np.vstack(made).astype(np.float32))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            if k is not None:
                out[i] = self.cache.get(k)
        return out


class _Cache:
    """Vectors by text hash: a dict in memory, backed (in a project) by
    Parquet files of (key, vector) under ``folder``, one per batch of new
    texts, written atomically and merged when they pile up."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.memory: dict[bytes, np.ndarray] = {}
        self._read = False

    def _load(self) -> None:
        self._read = True
        if self.folder is None or not self.folder.is_dir():
            return
        import pyarrow.parquet as pq

        for part in sorted(self.folder.glob("part-*.parquet")):
            try:
                t = pq.read_table(part)
            except (OSError, ValueError):  # merged away meanwhile, or torn
                continue
            keys = t.column("key").to_pylist()
            vecs = np.asarray(t.column("vector").combine_chunks().flatten(),
                              dtype=np.float32).reshape(len(keys), -1)
            self.memory.update(zip(keys, vecs, strict=True))

    def has(self, key: bytes) -> bool:
        if not self._read:
            self._load()
        return key in self.memory

    def get(self, key: bytes) -> np.ndarray:
        return self.memory[key]

    def add(self, keys: list[bytes], vecs: np.ndarray) -> None:
        if len(self.memory) + len(keys) > MEMORY_ROWS and self.folder is None:
            self.memory.clear()  # serving: a bounded memo, not a store
        self.memory.update(zip(keys, vecs, strict=True))
        if self.folder is not None:
            self._write(keys, vecs)

    def _write(self, keys: list[bytes], vecs: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        dim = vecs.shape[1]
        parts = sorted(self.folder.glob("part-*.parquet"))
        if len(parts) >= COMPACT_PARTS:  # merge: everything known is in memory
            keys = list(self.memory)
            vecs = np.vstack([self.memory[k] for k in keys])
        table = pa.table({"key": pa.array(keys, pa.binary(16)),
                          "vector": pa.FixedSizeListArray.from_arrays(
                              pa.array(vecs.reshape(-1), pa.float32()), dim)})
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = self.folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.folder / name)
        if len(parts) >= COMPACT_PARTS:
            for p in parts:
                p.unlink(missing_ok=True)


def _model2vec(folder: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a folder, never the hub
    try:
        from model2vec import StaticModel
    except ImportError:
        raise MlsdError(f"{folder}: a model2vec encoder needs the model2vec package "
                        f"(pip install 'mlsd[embeddings]')") from None
    try:
        model = StaticModel.from_pretrained(str(folder), force_download=False)
    except Exception as err:  # noqa: BLE001 - a corrupt folder: say which
        raise MlsdError(f"{folder}: not a readable model2vec model ({err})") from None

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, show_progress_bar=False,
                                       use_multiprocessing=False), dtype=np.float32)
    return encode


def _onnx(folder: Path):
    try:
        import onnxruntime as ort
        from tokenizers import Tokenizer
    except ImportError as err:
        raise MlsdError(f"{folder}: an ONNX encoder needs onnxruntime and tokenizers "
                        f"({err.name} is missing): pip install 'mlsd[embeddings]'"
                        ) from None
    from .._threads import SMALL_ROWS, free_cores

    try:
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as err:  # noqa: BLE001
        raise MlsdError(f"{folder / 'tokenizer.json'}: not a readable tokenizer "
                        f"({err})") from None
    tok.enable_truncation(MAX_TOKENS)
    pad = tok.padding or {}
    tok.enable_padding(pad_id=pad.get("pad_id", 0),
                       pad_token=pad.get("pad_token", "[PAD]"))
    sessions: dict[int, object] = {}

    def session(threads: int):
        if threads not in sessions:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            try:
                sessions[threads] = ort.InferenceSession(
                    str(folder / "model.onnx"), sess_options=opts,
                    providers=["CPUExecutionProvider"])
            except Exception as err:  # noqa: BLE001
                raise MlsdError(f"{folder / 'model.onnx'}: not a readable ONNX "
                                f"model ({err})") from None
        return sessions[threads]

    first = session(1)
    names = [i.name for i in first.get_inputs()]  # type: ignore[attr-defined]
    if "input_ids" not in names:
        raise MlsdError(f"{folder / 'model.onnx'}: an encoder takes input_ids "
                        f"(and attention_mask); this model takes {names}")

    def encode(texts: list[str]) -> np.ndarray:
        enc = tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feeds = {"input_ids": ids}
        if "attention_mask" in names:
            feeds["attention_mask"] = mask
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.array([e.type_ids for e in enc],
                                               dtype=np.int64)
        threads = 1 if len(texts) * ids.shape[1] < SMALL_ROWS else free_cores()
        out = np.asarray(session(threads).run(None, feeds)[0],  # type: ignore[attr-defined]
                         dtype=np.float32)
        if out.ndim == 2:  # already pooled
            return out
        if out.ndim != 3:
            raise MlsdError(f"{folder / 'model.onnx'}: expected token vectors "
                            f"(batch x tokens x dim) or pooled ones (batch x dim), "
                            f"got shape {out.shape}")
        m = mask[:, :, None].astype(np.float32)
        return (out * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
    return encode
