"""Find, read and validate ``mlsd.yaml``; turn pydantic errors into spec paths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .. import _yaml
from ..errors import SpecError
from ._models import ProjectSpec

SPEC_FILE = "mlsd.yaml"


def find_spec_file(start: str | Path | None = None) -> Path:
    """Return ``mlsd.yaml`` in ``start`` (default: the current folder) or a parent.

    Raises
    ------
    SpecError
        When no folder up to the root holds one.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / SPEC_FILE
        if candidate.is_file():
            return candidate
    raise SpecError(
        f"no {SPEC_FILE} in {here} or any parent folder; run `mlsd init DIR` to "
        f"create a project, or pass -c FILE"
    )


def _yaml_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = "validate" if part == "validate_" else str(part)
            out += f".{name}" if out else name
    return out or "(top level)"


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def parse_spec(data: Any, *, source: str = SPEC_FILE) -> ProjectSpec:
    """Validate a parsed YAML document as a :class:`ProjectSpec`.

    Raises
    ------
    SpecError
        Naming the YAML path of every mistake, e.g.
        ``features[3].encode: unknown encoder 'onehott'; expected one of ...``.
    """
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level")
    try:
        return ProjectSpec.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            loc = tuple(p for p in e["loc"] if not str(p).startswith("function-"))
            # Union members add their type name to the location; drop them.
            loc = tuple(
                p for p in loc if not (isinstance(p, str) and p in _UNION_TAGS)
            )
            problems.append((_yaml_path(loc), _message(e)))
        lines = [f"{path}: {msg}" for path, msg in dict.fromkeys(problems)]
        raise SpecError(
            f"{source} is invalid:\n  " + "\n  ".join(lines), problems=problems
        ) from None


_UNION_TAGS = {"str", "list[str]", "int", "float", "bool", "none", "list[any]",
               "file", "sql", "rest", "blobs"}


def apply_overrides(data: Any, overrides: list[str]) -> Any:
    """``data`` (a parsed spec) with each ``KEY.PATH=VALUE`` of ``overrides``
    set: the path's parts are keys, ``[n]`` an item of a list; the value is
    read as YAML (``3``, ``true``, ``[a, b]``, ``{method: smote}``); a missing
    mapping on the way is created. The spec is then validated as usual."""
    import re
    from copy import deepcopy

    data = deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item!r}: expected KEY=VALUE, as in "
                            f"imbalance.resample=smote")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise SpecError(f"--set {item!r}: the value is not YAML ({err})") from None
        parts: list[str | int] = []
        for name in key.strip().split("."):
            m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", name)
            if not m:
                raise SpecError(f"--set {item!r}: {name!r} is not a key (write "
                                f"a.b.c or features[2].encode)")
            parts.append(m.group(1))
            parts += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
        node = data
        for here, nxt in zip(parts[:-1], parts[1:], strict=True):
            if isinstance(here, int):
                if not isinstance(node, list) or here >= len(node):
                    raise SpecError(f"--set {item!r}: no item [{here}] there")
                node = node[here]
                continue
            if not isinstance(node, dict):
                raise SpecError(f"--set {item!r}: {here!r} is not under a mapping")
            if node.get(here) is None:
                node[here] = [] if isinstance(nxt, int) else {}
            node = node[here]
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise SpecError(f"--set {item!r}: no item [{last}] there")
        elif not isinstance(node, dict):
            raise SpecError(f"--set {item!r}: {last!r} is not under a mapping")
        node[last] = value
    return data


def load_spec(path: str | Path, overrides: list[str] | None = None) -> ProjectSpec:
    """Read and validate a spec file (with ``overrides``, see
    :func:`apply_overrides`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    try:
        data = _yaml.load(text)
    except _yaml.YamlError as err:
        raise SpecError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}:{where} not valid YAML: {err}") from None
    if overrides:
        return parse_spec(apply_overrides(data, overrides),
                          source=f"{path.name} with --set {' '.join(overrides)}")
    return parse_spec(data, source=str(path.name))


def spec_hash(spec: ProjectSpec) -> str:
    """A stable sha256 of the spec's meaning (not of its formatting)."""
    doc = spec.model_dump(mode="json", by_alias=True)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``mlsd.yaml``, for editors."""
    schema = ProjectSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mlsd project spec (mlsd.yaml)"
    return schema
