"""Synonyms for text augmentation: WordNet read from its own files, or a file of
your own.

:class:`WordNet` reads the WordNet 3.0 database as Debian's ``wordnet-base``
installs it (``/usr/share/wordnet``; ``WNSEARCHDIR`` points elsewhere): the
``index.POS`` files map a lemma to its synsets' byte offsets, the ``data.POS``
files hold each synset's words at those offsets (the format of wndb(5)). It is
read here in a few dozen lines because nltk's reader, the usual way, needs a
``lexnames`` file Debian's package does not ship and refuses paths outside its
own data folders; nothing is downloaded, and a missing database is one clear
error saying how to install it.

:class:`FileThesaurus` reads ``word<TAB>synonym<TAB>synonym...`` lines (TSV) or a
JSON object ``{"word": ["synonym", ...]}``: for another language, or a
vocabulary of one's own.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SpecError

POS = ("noun", "verb", "adj", "adv")
DEBIAN = Path("/usr/share/wordnet")


class WordNet:
    """Synonyms of English words from the WordNet database.

    Examples
    --------
    >>> wn = WordNet()                                     # doctest: +SKIP
    >>> wn.synonyms("error")[:3]                           # doctest: +SKIP
    ['computer error', 'erroneousness', 'erroneous belief']
    """

    def __init__(self, folder: str | Path | None = None):
        folder = Path(folder or os.environ.get("WNSEARCHDIR") or DEBIAN)
        missing = [f"index.{p}" for p in POS if not (folder / f"index.{p}").is_file()]
        if missing:
            raise SpecError(
                f"synonym replacement needs the WordNet database, and {folder} lacks "
                f"{', '.join(missing)}: install it (Debian/Ubuntu: apt-get install "
                f"wordnet-base), set WNSEARCHDIR to its folder, or give "
                f"augment.text.thesaurus (a TSV or JSON file of synonyms)")
        self.folder = folder
        self._index: dict[str, list[tuple[str, int]]] | None = None
        self._cache: dict[str, list[str]] = {}

    def _load(self) -> dict[str, list[tuple[str, int]]]:
        index: dict[str, list[tuple[str, int]]] = {}
        for pos in POS:
            with open(self.folder / f"index.{pos}", encoding="utf-8") as f:
                for line in f:
                    if line.startswith(" "):  # the licence at the top
                        continue
                    parts = line.split()
                    # lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt
                    # offset... : the offsets are the last synset_cnt fields
                    n = int(parts[2])
                    index.setdefault(parts[0], []).extend(
                        (pos, int(o)) for o in parts[-n:])
        return index

    def synonyms(self, word: str) -> list[str]:
        """The other words of the synsets of ``word`` (lower case), in the
        order WordNet gives its senses (the commonest first)."""
        key = word.lower()
        if key in self._cache:
            return self._cache[key]
        if self._index is None:
            self._index = self._load()
        out: list[str] = []
        handles = {}
        for pos, offset in self._index.get(key.replace(" ", "_"), []):
            f = handles.get(pos)
            if f is None:
                f = handles[pos] = open(self.folder / f"data.{pos}", "rb")  # noqa: SIM115
            f.seek(offset)
            fields = f.readline().decode("utf-8").split()
            count = int(fields[3], 16)  # w_cnt is two hex digits
            for i in range(count):
                w = fields[4 + 2 * i].split("(")[0].replace("_", " ")
                if w.lower() != key and w not in out:
                    out.append(w)
        for f in handles.values():
            f.close()
        self._cache[key] = out
        return out


class FileThesaurus:
    """Synonyms from a TSV (``word<TAB>synonym...``) or JSON file."""

    def __init__(self, path: str | Path):
        import json

        path = Path(path)
        if not path.is_file():
            raise SpecError(f"augment.text.thesaurus: {path} is not a file")
        text = path.read_text(encoding="utf-8")
        table: dict[str, list[str]] = {}
        if path.suffix.lower() == ".json":
            try:
                doc = json.loads(text)
            except ValueError as err:
                raise SpecError(f"{path}: not valid JSON ({err})") from None
            if not isinstance(doc, dict) or not all(
                    isinstance(v, list) for v in doc.values()):
                raise SpecError(f"{path}: expected an object of word -> list of "
                                f"synonyms")
            table = {str(k).lower(): [str(x) for x in v] for k, v in doc.items()}
        else:
            for n, line in enumerate(text.splitlines(), 1):
                parts = [p.strip() for p in line.split("\t") if p.strip()]
                if len(parts) == 1:
                    raise SpecError(f"{path}, line {n}: a word and no synonym "
                                    f"(expected word<TAB>synonym...)")
                if parts:
                    table.setdefault(parts[0].lower(), []).extend(parts[1:])
        self.table = table

    def synonyms(self, word: str) -> list[str]:
        return [s for s in self.table.get(word.lower(), []) if s.lower() !=
                word.lower()]
