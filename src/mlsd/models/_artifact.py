"""Model artifacts: a folder with the model in a safe format, the feature state,
the input schema, the threshold, the metrics and the lineage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ModelError
from ..features import FeaturePipeline
from ._learners import Learner, learner_class

MANIFEST = "manifest.json"
FEATURES = "features.json"
INPUT_SCHEMA = "input_schema.json"
EVALUATION = "evaluation.json"
ONNX = "model.onnx"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_hashes(folder: Path) -> dict[str, str]:
    """The sha256 of every file of a folder, by its path inside it."""
    return {p.relative_to(folder).as_posix(): _sha(p)
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def folder_digest(folder: Path, hashes: dict[str, str] | None = None) -> str:
    """One sha256 over every file of an artifact, its manifest included (names
    and contents): what the catalog records when the model is saved, and what
    loading it checks. The manifest's own per-file hashes cannot protect the
    manifest (change its threshold, or drop its `files`, and they agree)."""
    h = hashlib.sha256()
    for name, sha in sorted((hashes or _file_hashes(folder)).items()):
        h.update(name.encode() + b"\0")
        h.update(sha.encode() + b"\n")
    return h.hexdigest()


def registered_digest(folder: Path) -> tuple[bool, str | None]:
    """Whether the project's catalog knows the model in ``folder``
    (``.mlsd/artifacts/models/ID``), and the digest it recorded (None for a
    model saved before mlsd recorded digests)."""
    from ..lake import Catalog

    folder = Path(folder).resolve()
    home = folder.parent.parent.parent  # .mlsd
    if folder.parent.name != "models" or not (home / "catalog.db").is_file():
        return False, None
    entry = Catalog(path=home / "catalog.db").artifact(folder.name)
    if entry is None or entry["artifact_id"] != folder.name:
        return False, None
    return True, entry["metadata"].get("digest")


def with_windows(table: pa.Table, schema: dict[str, Any]) -> pa.Table:
    """The stream features a table lacks, computed over its own rows as the
    events (a file scored in batch: its rows are their own history); the
    service brings them from the online store instead."""
    windows = schema.get("windows") or []
    if not windows:
        return table
    from ..features._stream import Window, batch_values

    missing = [w for w in map(Window.from_dict, windows)
               if w.name not in table.column_names]
    return batch_values(table, missing) if missing else table


def derive_columns(table: pa.Table, derive: dict[str, str]) -> pa.Table:
    """Add the spec's derived columns, computed as the load computed them
    (DuckDB, the same SQL), so served rows get what training rows had. The
    SQL comes from the artifact: it runs locked (no file, network or
    extension), as at load."""
    import duckdb

    from ..engine._sandbox import locked_connection, why

    con = locked_connection({"batch": table}, threads=1)
    try:
        exprs = ", ".join('({}) AS "{}"'.format(e, n.replace('"', '""'))
                          for n, e in derive.items())
        derived = con.sql(f"SELECT {exprs} FROM batch").to_arrow_table()
    except duckdb.Error as err:
        raise ModelError(f"a derived column of the model fails: {why(err)}") from None
    finally:
        con.close()
    for name in derived.column_names:
        table = table.append_column(name, derived.column(name))
    return table


def row_validator(input_schema: dict[str, Any]):
    """The validator of a model's input rows: its types, required fields and
    the spec's rules kept in the artifact (ranges, allowed values, patterns,
    checks). One validator for serving and batch scoring, so a row gets the
    same answer from both."""
    from ..etl import DataSchema, Validator
    from ..spec import ValidateSpec

    rules = input_schema.get("rules") or {}
    return Validator(
        schema=DataSchema(dict(input_schema["columns"])),
        rules=ValidateSpec(
            required=input_schema.get("required", []),
            null_values=input_schema.get("null_values", ["", "NA", "null"]),
            ranges={c: tuple(r) for c, r in rules.get("ranges", {}).items()},
            allowed=rules.get("allowed", {}), patterns=rules.get("patterns", {}),
            checks=rules.get("checks", {})))


def _bundle(folder: Path, pipeline: FeaturePipeline) -> list[str]:
    """Copy the encoder folders the features read into the artifact (so it
    serves without the project), as ``encoders/HASH/FILE``; their names."""
    import shutil

    from ..features._pipeline import BUNDLE

    names = []
    for sha, source, files in pipeline.bundles():
        home = folder / BUNDLE / sha[:16]
        home.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(Path(source) / f, home / f)
            names.append(f"{BUNDLE}/{sha[:16]}/{f}")
    return names


class ModelArtifact:
    """A trained model ready to score typed Arrow rows.

    Load with :meth:`load`; :meth:`score` runs the feature pipeline's ``apply``
    and the model, exactly as in batch scoring and serving.
    """

    def __init__(self, *, folder: Path, manifest: dict[str, Any],
                 pipeline: FeaturePipeline, learner: Learner,
                 input_schema: dict[str, Any], intervals: Any = None,
                 objectives: Any = None):
        self.folder = folder
        self.manifest = manifest
        self.pipeline = pipeline
        self.learner = learner
        self.input_schema = input_schema
        self.intervals = intervals  # regression: ._intervals.Intervals
        self.objectives = objectives  # several: ._objectives.ObjectiveModels

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @staticmethod
    def save(folder: Path, *, manifest: dict[str, Any], pipeline: FeaturePipeline,
             learner: Learner, input_schema: dict[str, Any],
             evaluation: dict[str, Any] | None = None, intervals: Any = None,
             objectives: Any = None, onnx_rows: Any = None) -> Path:
        """Write the artifact; ``evaluation`` (the test curves and the
        importance) is kept for reports made later from the artifact;
        ``intervals`` (regression) adds the quantile pair and the conformal
        widths, served with every value; ``onnx_rows`` (feature rows: the
        test split's) adds ``model.onnx``, checked on them."""
        folder.mkdir(parents=True, exist_ok=False)
        model_file = learner.save(folder)
        extra = [] if intervals is None else intervals.save(folder)
        primary = None
        if objectives is not None:
            primary = next(o.name for o in objectives.objectives
                           if o.target == manifest["target"])
            extra += objectives.save(folder, primary)
        (folder / FEATURES).write_text(pipeline.to_json(), encoding="utf-8")
        extra += _bundle(folder, pipeline)
        (folder / INPUT_SCHEMA).write_text(
            json.dumps(input_schema, indent=1, sort_keys=True) + "\n",
            encoding="utf-8")
        onnx = None
        if onnx_rows is not None:
            from ._onnx import export_onnx

            onnx = export_onnx(learner, pipeline.names(), folder / ONNX,
                               manifest=manifest, check_on=onnx_rows)
            extra += [ONNX, f"{ONNX}.json"]
            onnx["path"] = ONNX
        names = [model_file, FEATURES, INPUT_SCHEMA, *extra]
        if evaluation is not None:
            (folder / EVALUATION).write_text(
                json.dumps(evaluation, sort_keys=True, default=float) + "\n",
                encoding="utf-8")
            names.append(EVALUATION)
        files = {name: _sha(folder / name) for name in names}
        doc = {**manifest, "model_file": model_file, "files": files}
        if intervals is not None:
            doc["intervals"] = intervals.meta()
        if objectives is not None:
            doc["objectives"] = objectives.meta(primary)
        if onnx is not None:
            doc["onnx"] = onnx
        (folder / MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True,
                                                  default=str) + "\n",
                                       encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path, *, digest: str | None = None,
             trust_unregistered: bool = False) -> ModelArtifact:
        """Read an artifact, checking it first.

        Its files, the manifest included, must have the ``digest`` the catalog
        recorded when it was saved (looked up in the project's catalog when
        not given). A folder no catalog knows is loaded only with
        ``trust_unregistered``, and then only checked against its own
        manifest's hashes.
        """
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            raise ModelError(f"{folder}: not a model artifact (no {MANIFEST})")
        known = digest is not None
        if not known:
            known, digest = registered_digest(folder)
        if not known and not trust_unregistered:
            raise ModelError(
                f"{folder}: no project catalog records this model, so its files "
                f"cannot be checked; load it only if you trust where it came from "
                f"(--trust-unregistered)")
        hashes = _file_hashes(folder)  # each file read once, for both checks
        if digest is not None and folder_digest(folder, hashes) != digest:
            raise ModelError(
                f"{folder}: the model's files (its manifest included) changed since "
                f"it was saved: the catalog's digest does not match; refused")
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ModelError(f"{folder / MANIFEST}: not valid JSON ({err})") from None
        if not isinstance(manifest, dict) or not isinstance(
                manifest.get("files"), dict) or "kind" not in manifest:
            raise ModelError(f"{folder / MANIFEST}: not an mlsd model manifest "
                             f"(no `kind` or `files`)")
        for name, sha in manifest.get("files", {}).items():
            path = folder / name
            if hashes.get(name) != sha:
                raise ModelError(f"{path}: missing or changed since the model was "
                                 f"saved (sha256 mismatch)")
        try:
            learner = learner_class(manifest).load(folder, manifest)
        except ModelError as err:
            raise ModelError(f"{folder}: {err}") from None
        pipeline = FeaturePipeline.from_json(
            (folder / FEATURES).read_text(encoding="utf-8"), folder)
        schema = json.loads((folder / INPUT_SCHEMA).read_text(encoding="utf-8"))
        intervals = None
        if manifest.get("intervals"):
            from ._intervals import Intervals

            intervals = Intervals.load(folder, manifest["intervals"],
                                       manifest.get("threads"))
        objectives = None
        if manifest.get("objectives"):
            from ._objectives import ObjectiveModels

            objectives = ObjectiveModels.load(folder, manifest["objectives"], learner,
                                              manifest.get("threads"))
        return cls(folder=folder, manifest=manifest, pipeline=pipeline,
                   learner=learner, input_schema=schema, intervals=intervals,
                   objectives=objectives)

    @property
    def evaluation(self) -> dict[str, Any]:
        """The test curves and importance saved with the model (empty for
        artifacts saved without them)."""
        path = self.folder / EVALUATION
        if EVALUATION not in self.manifest.get("files", {}):
            return {"curves": {}, "importance": []}
        if _sha(path) != self.manifest["files"][EVALUATION]:
            raise ModelError(f"{path}: changed since the model was saved (sha256 "
                             f"mismatch)")
        return json.loads(path.read_text(encoding="utf-8"))

    def score(self, table: pa.Table, weights: dict[str, float] | None = None
              ) -> np.ndarray:
        """Raw model output for typed rows: probabilities, or values (with
        prediction intervals: rows of value, lower, upper; with several
        objectives: rows of the combined score and each objective's output,
        ``weights`` changing the combination of a decoupled model)."""
        if table.num_rows == 0:
            if self.objectives is not None:
                return np.zeros((0, 1 + len(self.objectives.objectives)))
            return np.zeros((0, 3) if self.intervals is not None else 0)
        derive = self.input_schema.get("derive") or {}
        if derive:
            table = derive_columns(table, derive)
        table = with_windows(table, self.input_schema)
        X = self.pipeline.apply(table)
        if self.objectives is not None:
            return self.objectives.score(X, weights)
        out = self.learner.predict(X)
        if self.intervals is None:
            return out
        lo, hi = self.intervals.bounds(X, out)
        return np.column_stack([out, lo, hi])

    def decide(self, out: np.ndarray) -> list[dict[str, Any]]:
        """Per-row prediction documents: score(s) and the decided label (with
        several objectives: the combined score and each objective's output)."""
        m = self.manifest
        if self.objectives is not None:
            names = self.objectives.names
            return [{"score": float(row[0]),
                     "objectives": {n: float(v) for n, v in zip(names, row[1:],
                                                                strict=True)}}
                    for row in out]
        if self.task == "binary":
            thr = m["threshold"]
            pos, neg = m["classes"][1], m["classes"][0]
            # Python floats from one tolist(): a float() of each numpy scalar
            # is a third of the time of this loop
            return [{"score": s, "label": pos if s >= thr else neg}
                    for s in np.asarray(out, dtype=np.float64).tolist()]
        if self.task == "multilabel":
            labels, thr = m["classes"], m["threshold"]
            return [{"scores": {str(c): float(p) for c, p in zip(labels, row,
                                                                 strict=True)},
                     "labels": [str(c) for c, p, t in zip(labels, row, thr,
                                                          strict=True) if p >= t]}
                    for row in out]
        if self.task == "multiclass":
            classes = m["classes"]
            return [{"scores": {str(c): float(p) for c, p in zip(classes, row,
                                                                 strict=True)},
                     "label": classes[int(np.argmax(row))]} for row in out]
        if out.ndim == 2:  # value, lower, upper
            return [{"value": v, "lower": lo, "upper": hi}
                    for v, lo, hi in np.asarray(out, dtype=np.float64).tolist()]
        return [{"value": v} for v in np.asarray(out, dtype=np.float64).tolist()]
