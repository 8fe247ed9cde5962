"""Specs and schema files: no alias bomb, no endless nesting, no key said
twice; each refused in one line naming the file and the line (issue 11)."""

from __future__ import annotations

import pytest

from mlsd.errors import SpecError
from mlsd.spec import load_spec
from tests._helpers import run_cli

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
    for i in range(8))


def _spec_file(tmp_path, example_dir, params: str):
    """The example's spec with ``params`` as the model's free-form params."""
    text = (example_dir / "mlsd.yaml").read_text()
    line = next(x for x in text.splitlines() if x.startswith("  params:"))
    path = tmp_path / "mlsd.yaml"
    path.write_text(text.replace(line, "  params:\n" + "".join(
        "    " + p + "\n" for p in params.splitlines()).rstrip("\n")))
    return path


def test_a_billion_laughs_in_the_spec_is_refused_at_once(tmp_path, example_dir):
    """In `model.params` (free-form) a few lines of aliases passed the check,
    then hashing the spec took 2.6 GB."""
    with pytest.raises(SpecError, match=r"mlsd.yaml: line \d+: the document expands "
                                        r"to [\d,]+ values"):
        load_spec(_spec_file(tmp_path, example_dir, LAUGHS))


def test_a_key_said_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "mlsd.yaml"
    path.write_text("name: a\nseed: 1\nname: b\n")
    with pytest.raises(Exception, match=r"line 3: the key 'name' appears twice in "
                                        r"one mapping \(first on line 1\)"):
        load_spec(path)


def test_deep_nesting_is_one_line(tmp_path, example_dir):
    deep = "deep: " + "[" * 20_000 + "]" * 20_000
    with pytest.raises(SpecError, match="mlsd.yaml"):
        load_spec(_spec_file(tmp_path, example_dir, deep))


def test_merge_keys_and_a_few_aliases_still_work(tmp_path):
    from mlsd import _yaml

    doc = _yaml.load("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert doc["other"] == {"x": 1, "y": 3}


def test_schema_files_get_the_same_rules(fresh_project):
    path = fresh_project / "schemas" / "posts_log.yaml"
    text = path.read_text()
    path.write_text(text + "columns:\n  a: string\n")  # `columns` said twice
    proc = run_cli("spec", "check", cwd=fresh_project, check=False)
    assert proc.returncode == 2 and "schemas/posts_log.yaml" in proc.stderr
    assert "appears twice" in proc.stderr and "Traceback" not in proc.stderr
