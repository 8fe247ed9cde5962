"""What a column's name says: the words in it, and whether they name an entity
(a user, a patient) or an identifier. Shared by ``mlsd init``, which proposes a
group split, and the audit, which looks for an undeclared group."""

from __future__ import annotations

import re

ID_WORDS = frozenset({"id", "uuid", "guid", "idx", "index", "key", "pk", "rowid",
                      "unnamed"})
ENTITY_WORDS = frozenset({
    "user", "customer", "client", "patient", "subject", "author", "account",
    "session", "device", "person", "member", "player", "household", "family",
    "individual", "entity", "owner", "visitor", "userid", "customerid",
    "patientid", "subjectid"})


def name_words(name: str) -> list[str]:
    """Words of a column name: snake_case, camelCase, spaces, dots."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


def names_entity(name: str) -> bool:
    """The column is an entity or its id (``subject``, ``patient_id``,
    ``individual``): its last word says so. ``author_account_age_days`` is an
    attribute of an author, not one."""
    words = name_words(name)
    return bool(words) and words[-1] in ENTITY_WORDS | {"id"}
