"""The runtime of a run: the project, the run context, the stage interface and
the runner.

A *stage* is a function in its stage's package (``trainingdata``, ``features``,
``models`` ...) declared with :func:`stage`: its parameters after the run context
name the products it reads, and the decorator names the products it writes
(lake datasets, artifacts, or values kept in memory). :class:`Runner` calls
stages in order and records, for all of them in one place, progress, timing,
lineage edges in the catalog and the run summary; :func:`execute` is one
recorded run. Stages share a :class:`RunContext` (project paths, spec, lake,
catalog, reporter, run id, seed) and never import the pipeline or the command
line, which both build on this module.
"""

from ._context import Reporter, RunContext
from ._project import Project
from ._runner import (
    Plan,
    Runner,
    check_stages,
    digest,
    execute,
    merge,
    recorded_run,
    run_lock,
)
from ._stage import (
    ARTIFACT,
    DATASET,
    MEMORY,
    ArtifactRef,
    DatasetRef,
    Stage,
    StageResult,
    stage,
)

__all__ = [
    "ARTIFACT",
    "DATASET",
    "MEMORY",
    "ArtifactRef",
    "DatasetRef",
    "Plan",
    "Project",
    "Reporter",
    "RunContext",
    "Runner",
    "Stage",
    "StageResult",
    "digest",
    "check_stages",
    "execute",
    "merge",
    "recorded_run",
    "run_lock",
    "stage",
]
