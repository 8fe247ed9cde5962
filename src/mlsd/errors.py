"""The exceptions mlsd raises: one hierarchy under :class:`MlsdError`.

Every error names what is wrong and where (spec path, file, line, column), so the
command line can print it as one clear message and exit with code 2.
"""

from __future__ import annotations

__all__ = [
    "MlsdError",
    "SpecError",
    "DataError",
    "SchemaError",
    "LakeError",
    "NotFittedError",
    "ModelError",
    "StageError",
]


class MlsdError(Exception):
    """Base of every error mlsd raises on purpose (bad input or usage)."""


class SpecError(MlsdError, ValueError):
    """The project spec (``mlsd.yaml``) is missing or invalid.

    ``problems`` holds ``(yaml_path, message)`` pairs, one per mistake found.
    """

    def __init__(self, message: str, *, problems: list[tuple[str, str]] | None = None):
        self.problems = problems or []
        super().__init__(message)


class DataError(MlsdError, ValueError):
    """Input data cannot be read at all (missing or empty file, wrong header)."""


class SchemaError(MlsdError, ValueError):
    """A data schema file is invalid or does not fit the data."""


class LakeError(MlsdError):
    """A dataset name or version is invalid or unknown."""


class NotFittedError(MlsdError, AttributeError):
    """A learned state is used before ``fit``/``analyze`` computed it."""


class ModelError(MlsdError):
    """A model cannot be trained, found or loaded."""


class StageError(MlsdError):
    """A stage is declared or used wrongly, or a run cannot start where asked
    (``mlsd run --from``): the message names the stage and what to do."""
