"""The lake and the catalog: versioned tables and the metadata between them.

:class:`Lake` stores every dataset as a Delta table under ``.mlsd/lake/``, one
atomic, tagged commit per write, so any version can be read again and an
unchanged re-write adds no version. :class:`Catalog` records, in
``.mlsd/catalog.db``, the runs, loads, dataset versions, artifacts and the lineage
edges that let ``mlsd lineage`` walk from a model back to its source files.
"""

from ._catalog import Catalog, dataset_node, now
from ._delta import AREAS, FILE_ROWS, WRITE_ID, Lake, Parts
from ._paths import check_name, inside

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
