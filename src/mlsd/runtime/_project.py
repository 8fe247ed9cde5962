"""A project folder: its spec, and (opened on first use) its lake and catalog."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError, SpecError
from ..spec import ProjectSpec, find_spec_file, load_spec

if TYPE_CHECKING:
    from ..lake import Catalog, Lake


class Project:
    """A project folder: ``mlsd.yaml``, and ``.mlsd/`` with the lake, the catalog,
    the artifacts and the reports.

    Only the spec is read when a project is opened: the lake and the catalog are
    opened on first use, so a command that only needs the spec (``mlsd spec
    check``) never loads the storage libraries.

    Parameters
    ----------
    spec_path : Path
        The project's spec file; its folder is the project root.
    """

    def __init__(self, *, spec_path: Path, overrides: list[str] | None = None):
        self.spec_path = Path(spec_path).resolve()
        self.root = self.spec_path.parent
        self.overrides = list(overrides or [])
        self.spec: ProjectSpec = load_spec(self.spec_path, self.overrides)
        self.home = self.root / ".mlsd"

    def with_overrides(self, overrides: list[str]) -> Project:
        """The same project with settings of its spec changed for this use
        only (``imbalance.resample=smote``; see
        :func:`mlsd.spec.apply_overrides`); the file is left as it is."""
        return Project(spec_path=self.spec_path,
                       overrides=[*self.overrides, *overrides])

    @cached_property
    def lake(self) -> Lake:
        """The project's versioned tables (``.mlsd/lake``)."""
        from ..lake import Lake

        return Lake(root=self.home, url=self.spec.lake.url)

    @cached_property
    def catalog(self) -> Catalog:
        """The project's metadata: runs, stages, datasets, artifacts, lineage."""
        from ..lake import Catalog

        return Catalog(path=self.home / "catalog.db")

    @classmethod
    def find(cls, start: str | Path | None = None, spec: str | Path | None = None
             ) -> Project:
        """The project of ``spec`` (a file), or of the nearest ``mlsd.yaml``."""
        if spec is not None:
            path = Path(spec)
            if not path.is_file():
                raise SpecError(f"{path}: no such spec file")
            return cls(spec_path=path)
        return cls(spec_path=find_spec_file(start))

    @classmethod
    def of(cls, project: Project | str | Path | None) -> Project:
        """``project`` itself, or the project of a folder or spec file (default:
        the current folder's)."""
        if isinstance(project, Project):
            return project
        path = Path(project) if project is not None else None
        if path is not None and path.is_file():
            return cls.find(spec=path)
        return cls.find(start=path)

    def artifact_path(self, kind: str, artifact_id: str) -> Path:
        """The folder of one artifact, ``.mlsd/artifacts/KIND/ID``; refuses ids
        that would escape it."""
        from ..lake import check_name, inside

        return inside(self.home, "artifacts", check_name(kind),
                      check_name(artifact_id))

    def model_path(self, model_id: str) -> Path:
        return self.artifact_path("models", model_id)

    def latest_model(self) -> Path:
        models = self.catalog.artifacts("model")
        if not models:
            raise ModelError("no model yet in this project: run `mlsd run` first")
        return self.root / models[-1]["path"]

    def find_model(self, model_id: str | None) -> Path:
        """A model's folder; see :meth:`which_model`."""
        return self.which_model(model_id)[0]

    def which_model(self, model_id: str | None) -> tuple[Path, str]:
        """A model's folder, and how it was chosen.

        ``model_id``: an alias (``champion``), a model id or its start, or a
        model folder given by path (checked at load: see ModelArtifact.load).
        None: the spec's ``serve.model``, else the ``champion`` alias when a
        model holds it, else the latest model.
        """
        from ..lake import CHAMPION

        how = "named"
        if model_id is None:
            model_id = self.spec.serve.model
            how = "serve.model in the spec"
        if model_id is None:
            champion = self.catalog.alias(CHAMPION)
            if champion is None:
                path = self.latest_model()
                return path, "the latest model"
            model_id, how = champion, "alias champion"
        else:
            given = Path(model_id).expanduser()
            if given.is_dir() and (given / "manifest.json").is_file():
                return given, "a model folder"
            aliased = self.catalog.alias(model_id)
            if aliased is not None:
                said = f"alias {model_id}"
                model_id = aliased
                how = said if how == "named" else f"{how}: {said}"
        art = self.catalog.artifact(model_id)
        if art is None or art["kind"] != "model":
            raise ModelError(f"no model {model_id!r}: no alias of that name, and no "
                             f"model id (or more than one) starts so; `mlsd models` "
                             f"lists the models, `mlsd models aliases` the aliases")
        return self.root / art["path"], how
