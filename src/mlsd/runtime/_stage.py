"""The stage interface: a function that declares what it reads and writes.

A stage is a plain function ``fn(ctx, product, ...)``: its parameters after the
run context name the *products* it reads (what earlier stages wrote), and
:func:`stage` declares the products it writes and of which kind:

- ``dataset``: versioned lake tables (:class:`DatasetRef`, or a list of them);
- ``artifact``: files under ``.mlsd/artifacts`` registered in the catalog
  (:class:`ArtifactRef`);
- ``memory``: any Python object, alive only during the run.

Persisted products (datasets and artifacts) are recorded in the catalog with
lineage edges from what the stage read; a run can start at a stage only when
everything it needs from earlier stages is persisted.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import StageError

if TYPE_CHECKING:
    from ._context import RunContext

DATASET, ARTIFACT, MEMORY = "dataset", "artifact", "memory"
KINDS = (DATASET, ARTIFACT, MEMORY)
PERSISTED = (DATASET, ARTIFACT)
DEFAULT_RELATION = "input_of"


@dataclass(frozen=True, kw_only=True)
class DatasetRef:
    """One version of a lake dataset, as a stage wrote or read it.

    ``meta`` holds what later stages need to know about it without reading it
    (counts, the loads it came from); it is kept in the catalog with the stage.
    """

    area: str
    name: str
    version: int
    rows: int | None = None
    write_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def dataset(self) -> str:
        return f"{self.area}/{self.name}"

    @property
    def node(self) -> str:
        """The lineage node, ``dataset:AREA/NAME@VERSION``."""
        return f"dataset:{self.area}/{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": DATASET, "area": self.area, "name": self.name,
                "version": self.version, "rows": self.rows,
                "write_id": self.write_id, "meta": self.meta}


@dataclass(frozen=True, kw_only=True)
class ArtifactRef:
    """A file or folder under ``.mlsd/artifacts`` (``path`` is relative to the
    project root), registered in the catalog with its ``metadata``."""

    artifact_id: str
    kind: str
    path: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def node(self) -> str:
        """The lineage node, ``KIND:ID``."""
        return f"{self.kind}:{self.artifact_id}"

    def to_dict(self) -> dict[str, Any]:
        # the metadata is in the catalog's artifacts table; a reused stage
        # needs only where the artifact is
        return {"type": ARTIFACT, "artifact_id": self.artifact_id,
                "kind": self.kind, "path": self.path}


def ref_from_dict(doc: Any) -> Any:
    """A product value as stored in the catalog: a ref, or a list of refs."""
    if isinstance(doc, list):
        return [ref_from_dict(d) for d in doc]
    kind = doc.get("type")
    fields = {k: v for k, v in doc.items() if k != "type"}
    if kind == DATASET:
        return DatasetRef(**fields)
    if kind == ARTIFACT:
        return ArtifactRef(**fields)
    raise StageError(f"the catalog holds a product of unknown type {kind!r}")


def refs(value: Any) -> list[DatasetRef | ArtifactRef]:
    """The persisted refs inside a product value (one ref, or a list)."""
    items = value if isinstance(value, list | tuple) else [value]
    return [v for v in items if isinstance(v, DatasetRef | ArtifactRef)]


@dataclass(kw_only=True)
class StageResult:
    """What a stage hands back to the runner.

    Parameters
    ----------
    outputs : dict
        Every product the stage declared in ``writes``, by name.
    summary : dict
        Entries of the run summary (``mlsd run --json``); nested dictionaries
        are merged into what earlier stages put there.
    note : str
        A one-line remark shown next to the stage's progress.
    used : dict, optional
        For a read product of which the stage used only some refs (the
        sources of ``dataset.union`` among all sources), those refs: lineage
        edges are drawn from them only.
    """

    outputs: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    used: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Stage:
    """A step of ``mlsd run``: a function with declared inputs and outputs.

    Build one with the :func:`stage` decorator rather than by hand.

    Parameters
    ----------
    name : str
        The stage's name (``mlsd run --from NAME``).
    fn : callable
        ``fn(ctx, **inputs) -> StageResult``.
    reads : tuple of str
        The products it reads (its parameters after ``ctx``).
    writes : mapping
        Product name -> kind (``dataset``, ``artifact`` or ``memory``).
    relations : mapping
        Read product -> the name of its lineage edge to what the stage writes
        (``trained_on``, ``split_into`` ...); ``input_of`` by default.
    settings : callable, optional
        ``settings(ctx) -> dict`` of what the stage's output depends on besides
        its inputs (spec sections, schema files). A later run reuses the
        stage's outputs only while these are unchanged. By default, the whole
        spec.
    check : callable, optional
        ``check(ctx) -> [(spec_path, message)]``: problems of the spec against
        the data, found before any stage of the run does work.
    """

    name: str
    fn: Callable[..., StageResult]
    reads: tuple[str, ...]
    writes: Mapping[str, str]
    relations: Mapping[str, str] = field(default_factory=dict)
    settings: Callable[[RunContext], dict[str, Any]] | None = None
    check: Callable[[RunContext], list[tuple[str, str]]] | None = None
    doc: str = ""

    def __call__(self, ctx: RunContext, **inputs: Any) -> StageResult:
        return self.fn(ctx, **inputs)

    def relation(self, product: str) -> str:
        return self.relations.get(product, DEFAULT_RELATION)

    def settings_of(self, ctx: RunContext) -> dict[str, Any]:
        if self.settings is None:
            return {"spec": ctx.spec.model_dump(mode="json", by_alias=True)}
        return _plain(self.settings(ctx))


def _plain(value: Any) -> Any:
    """Settings as JSON-able values (pydantic models dumped as the spec is)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def stage(fn: Callable[..., StageResult] | None = None, *, name: str | None = None,
          writes: Mapping[str, str] | None = None,
          relations: Mapping[str, str] | None = None,
          settings: Callable[[RunContext], dict[str, Any]] | None = None,
          check: Callable[[RunContext], list[tuple[str, str]]] | None = None
          ) -> Any:
    """Declare a function as a stage of the run.

    The function's first parameter receives the :class:`RunContext`; each
    other parameter is a product an earlier stage writes, passed by name.

    Examples
    --------
    >>> from mlsd.runtime import stage, StageResult
    >>> @stage(writes={"row_count": "memory"})
    ... def count_rows(ctx, splits):
    ...     return StageResult(outputs={"row_count": splits.rows})
    >>> count_rows.reads, dict(count_rows.writes)
    (('splits',), {'row_count': 'memory'})
    """

    def wrap(f: Callable[..., StageResult]) -> Stage:
        params = list(inspect.signature(f).parameters.values())
        if not params:
            raise StageError(f"stage {f.__name__}: its first parameter must take "
                             f"the run context")
        for p in params[1:]:
            if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                raise StageError(f"stage {f.__name__}: parameter {p.name!r} must "
                                 f"name a product (no *args or **kwargs)")
        reads = tuple(p.name for p in params[1:])
        out = dict(writes or {})
        for product, kind in out.items():
            if kind not in KINDS:
                raise StageError(f"stage {f.__name__}: writes[{product!r}] is "
                                 f"{kind!r}; expected one of {', '.join(KINDS)}")
        rel = dict(relations or {})
        unknown = [r for r in rel if r not in reads]
        if unknown:
            raise StageError(f"stage {f.__name__}: relations name {unknown}, which "
                             f"it does not read ({', '.join(reads) or 'nothing'})")
        doc = inspect.getdoc(f) or ""
        return Stage(name=name or f.__name__, fn=f, reads=reads, writes=out,
                     relations=rel, settings=settings, check=check,
                     doc=doc.split("\n\n")[0].replace("\n", " "))

    return wrap if fn is None else wrap(fn)
