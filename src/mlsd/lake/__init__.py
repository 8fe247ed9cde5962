"""The lake and the catalog: versioned tables and the metadata between them.

:class:`Lake` stores every dataset as a Delta table under ``.mlsd/lake/``, one
atomic, tagged commit per write, so any version can be read again and an
unchanged re-write adds no version. :class:`Catalog` records, in
``.mlsd/catalog.db``, the runs and their stages, loads, dataset versions,
artifacts and the lineage edges that let ``mlsd lineage`` walk from a model
back to its source files.

The names load on first use: a command that only checks names or paths, or only
reads the catalog, does not pay for importing deltalake and pyarrow.
"""

from importlib import import_module
from typing import Any

from ._paths import check_name, inside

# Hand-written lazy loading (Scientific Python's SPEC 1 in ten lines): a name
# is imported from its module the first time it is asked for.
_WHERE = {"Catalog": "_catalog", "dataset_node": "_catalog", "now": "_catalog",
          "AREAS": "_delta", "FILE_ROWS": "_delta", "WRITE_ID": "_delta",
          "Lake": "_delta", "Parts": "_delta"}

__all__ = [
    "AREAS",
    "FILE_ROWS",
    "WRITE_ID",
    "Catalog",
    "Lake",
    "Parts",
    "check_name",
    "dataset_node",
    "inside",
    "now",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
