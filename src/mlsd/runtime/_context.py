"""The run context: what every stage of a run shares, and progress reporting."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._project import Project

if TYPE_CHECKING:
    import pyarrow as pa

    from ..engine import DuckDBEngine
    from ..lake import Catalog, Lake
    from ..spec import ProjectSpec
    from ._stage import DatasetRef

T = TypeVar("T")


class Reporter:
    """Receives progress from a run; the default says nothing.

    The command line passes one that draws Rich progress bars on stderr.
    Stages may open sub-steps (``with ctx.reporter.stage("ingest orders")``)
    inside the step the runner opens for them.
    """

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Reporter]:
        yield self

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units of work in the current step."""

    def note(self, text: str) -> None:
        """A one-line remark about the current step."""


@dataclass(kw_only=True)
class RunContext:
    """What the stages of one run share: the project (spec, lake, catalog),
    the run's id, start time and seed, the progress reporter, the summary so
    far, and a cache of values derived during the run.

    Stages receive it as their first argument; they never import the pipeline
    or the command line.
    """

    project: Project
    run_id: str
    started_at: datetime
    reporter: Reporter = field(default_factory=Reporter)
    spec_hash: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    cache: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    @property
    def spec(self) -> ProjectSpec:
        return self.project.spec

    @property
    def lake(self) -> Lake:
        return self.project.lake

    @property
    def catalog(self) -> Catalog:
        return self.project.catalog

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def seed(self) -> int:
        return self.project.spec.seed

    @cached_property
    def engine(self) -> DuckDBEngine:
        """The batch engine of the run (DuckDB through Ibis), opened on first use."""
        from .._threads import usable_cores
        from ..engine import DuckDBEngine

        return DuckDBEngine(lake=self.lake,
                            threads=self.spec.model.threads or usable_cores())

    @cached_property
    def spark(self):
        """The run's Spark engine when the spec says ``engine: spark``, else
        None (the session itself starts on first use)."""
        if self.spec.engine.kind != "spark":
            return None
        from ..engine import SparkEngine

        return SparkEngine(self.spec.engine, store=self.spec.lake.url)

    def memo(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()``, computed once per run for ``key``.

        For values several stages derive from the same persisted inputs (a
        dataset version read into memory, feature matrices): the key must name
        everything the value depends on, such as dataset versions.
        """
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def read(self, ref: DatasetRef) -> pa.Table:
        """One dataset version as an Arrow table, read once per run."""
        return self.memo(("dataset", ref.node),
                         lambda: self.lake.read(ref.area, ref.name, ref.version))

    def keep(self, ref: DatasetRef, table: pa.Table) -> None:
        """Remember a table a stage just wrote as ``ref``, so later stages of
        the run read it from memory instead of from the lake."""
        self.cache[("dataset", ref.node)] = table

    def artifact_path(self, kind: str, artifact_id: str) -> Path:
        """The folder of an artifact, ``.mlsd/artifacts/KIND/ID``."""
        return self.project.artifact_path(kind, artifact_id)

    def relative(self, path: Path) -> str:
        """A path inside the project as the catalog keeps it (relative, '/')."""
        return Path(path).resolve().relative_to(self.root).as_posix()
