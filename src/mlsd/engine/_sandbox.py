"""A DuckDB connection for SQL that someone typed: it sees the tables it is
given and nothing else.

Every place that runs SQL a person wrote or that was read from an artifact
(``mlsd sql``, ``validate.checks``, ``transform.derive`` at load, serving and
batch scoring, the predicates of ``mlsd lake delete``) opens its connection
here. The connection is in memory, reads only the Arrow tables and datasets
registered on it, and cannot reach the file system, the network or extensions
(``enable_external_access`` off, extensions neither installed nor loaded, no
scan of Python variables by name); ``lock_configuration`` then forbids any
``SET`` that would undo this. ``COPY ... TO``, ``ATTACH``, ``INSTALL``,
``read_csv('/etc/passwd')`` and ``glob('/root/*')`` fail with DuckDB's
permission error, which :func:`refused` turns into one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

_LOCKED = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,  # no scan of a Python variable by name
}


def locked_connection(tables: Mapping[str, Any] | None = None, *,
                      threads: int | None = None,
                      memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection over ``tables`` (name -> Arrow table,
    record batch reader or pyarrow dataset) that can reach nothing else."""
    import duckdb

    config: dict[str, Any] = dict(_LOCKED)
    if threads is not None:
        config["threads"] = max(1, int(threads))
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(":memory:", config=config)
    try:
        for name, table in (tables or {}).items():
            con.register(name, table)
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def refused(err: Exception) -> bool:
    """Whether a DuckDB error is the sandbox saying no (a file, the network,
    an extension or a setting), rather than a mistake in the SQL."""
    import duckdb

    text = str(err)
    return isinstance(err, duckdb.PermissionException) or (
        "configuration has been locked" in text
        or "disabled by configuration" in text
        or "disabled through configuration" in text)


REFUSED = ("files, the network, extensions and settings are refused: SQL here "
           "reads only the rows it is given")


def why(err: Exception) -> str:
    """A DuckDB error as one line for the user: the sandbox's refusal said
    plainly, any other error as DuckDB wrote it, its lines joined (the caret
    drawing of the query, `LINE 1: ...`, left out)."""
    if refused(err):
        return REFUSED
    lines = []
    for line in str(err).splitlines():
        if line.startswith("LINE "):
            break
        if line.strip():
            lines.append(line.strip())
    return "; ".join(lines)


def matches(table: Any, where: str) -> Any:
    """Per row of ``table``, whether the SQL predicate ``where`` holds (null
    counts as false), as a boolean Arrow array. The predicate runs in a locked
    connection that sees ``table`` as ``dataset`` (a subquery may name it) and
    nothing else; DuckDB's errors propagate (see :func:`why`)."""
    con = locked_connection({"dataset": table}, threads=1)
    try:
        return con.sql(f"SELECT coalesce(({where}), false) AS m FROM dataset"
                       ).to_arrow_table().column("m").combine_chunks()
    finally:
        con.close()


def check_expression(text: str) -> str | None:
    """Why ``text`` is not one SQL expression (None when it is): it must not
    end a parenthesis it did not open (``1=1) OR (1=1`` would escape the
    ``WHERE (...)`` it is put in), hold a ``;`` or a comment, or be empty.
    DuckDB's own tokenizer tells parentheses from those inside strings."""
    import duckdb

    if not text.strip():
        return "it is empty"
    try:
        tokens = duckdb.tokenize(text)
    except Exception as err:  # noqa: BLE001 - the tokenizer's own errors
        return f"it cannot be read as SQL ({err})"
    ends = [pos for pos, _ in tokens[1:]] + [len(text)]
    depth = 0
    for (pos, kind), end in zip(tokens, ends, strict=True):
        word = text[pos:end]
        if kind == duckdb.token_type.comment:
            return "it holds a comment"
        if kind != duckdb.token_type.operator:
            continue
        if ";" in word:
            return "it holds a ';' (one expression, not statements)"
        for ch in word:
            depth += ch == "("
            depth -= ch == ")"
            if depth < 0:
                return "it closes a parenthesis it did not open"
    if depth:
        return "a parenthesis is left open"
    return None
