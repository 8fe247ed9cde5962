"""The project spec: ``mlsd.yaml`` parsed into typed pydantic models.

Every stage reads its own section of :class:`ProjectSpec`. Mistakes in the file are
reported as :class:`mlsd.errors.SpecError` whose message names the path inside the
file (``features[3].encode: ...``), never as a traceback. :func:`json_schema` gives the
JSON Schema editors use to complete the file.
"""

from ._load import (
    apply_overrides,
    find_spec_file,
    json_schema,
    load_spec,
    parse_spec,
    spec_hash,
)
from ._models import (
    TASK_METRICS,
    AuditSpec,
    AugmentSpec,
    BlobSourceSpec,
    ColumnType,
    DatasetSpec,
    EvaluationSpec,
    FeatureSpec,
    ImbalanceSpec,
    IntervalSpec,
    LakeSpec,
    ModelSpec,
    ObjectiveSpec,
    ProblemSpec,
    ProjectSpec,
    RegistrySpec,
    ReportSpec,
    RestSourceSpec,
    SampleSpec,
    SearchSpec,
    ServeSpec,
    SourceSpec,
    SplitSpec,
    SqlSourceSpec,
    TransformSpec,
    ValidateSpec,
)

__all__ = [
    "apply_overrides",
    "AugmentSpec",
    "AuditSpec",
    "BlobSourceSpec",
    "ColumnType",
    "DatasetSpec",
    "EvaluationSpec",
    "IntervalSpec",
    "ObjectiveSpec",
    "SearchSpec",
    "RegistrySpec",
    "FeatureSpec",
    "ImbalanceSpec",
    "LakeSpec",
    "ModelSpec",
    "ProblemSpec",
    "ProjectSpec",
    "ReportSpec",
    "ServeSpec",
    "RestSourceSpec",
    "SampleSpec",
    "SourceSpec",
    "SplitSpec",
    "SqlSourceSpec",
    "TASK_METRICS",
    "TransformSpec",
    "ValidateSpec",
    "find_spec_file",
    "json_schema",
    "load_spec",
    "parse_spec",
    "spec_hash",
]
