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

from .._lazy import attach
from ._paths import check_name, inside

# the names that need deltalake and pyarrow load on first use
_WHERE = {"CHAMPION": "_catalog", "Catalog": "_catalog",
          "dataset_node": "_catalog", "now": "_catalog",
          "AREAS": "_delta", "FILE_ROWS": "_delta", "WRITE_ID": "_delta",
          "Lake": "_delta", "Parts": "_delta", "write_part": "_delta"}
__getattr__, __dir__ = attach(__name__, _WHERE)

__all__ = [
    "AREAS",
    "CHAMPION",
    "FILE_ROWS",
    "WRITE_ID",
    "Catalog",
    "Lake",
    "Parts",
    "check_name",
    "dataset_node",
    "inside",
    "now",
    "write_part",
]
