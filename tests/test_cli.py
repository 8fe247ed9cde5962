"""The command line: bad input gives one clear line and exit code 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests._helpers import run_cli, run_probe


def _edit_spec(folder: Path, fn) -> None:
    path = folder / "mlsd.yaml"
    doc = yaml.safe_load(path.read_text())
    fn(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _fails(folder: Path, *args: str) -> str:
    proc = run_cli(*args, cwd=folder, check=False)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_spec_unknown_key(fresh_project):
    _edit_spec(fresh_project, lambda d: d["split"].update(stratgy="time"))
    msg = _fails(fresh_project, "run")
    assert "split.stratgy: unknown key" in msg


def test_spec_wrong_type(fresh_project):
    _edit_spec(fresh_project, lambda d: d["split"].update(test="a fifth"))
    msg = _fails(fresh_project, "spec", "check")
    assert "split.test:" in msg and "number" in msg


def test_spec_unknown_encoder_names_its_path(fresh_project):
    _edit_spec(fresh_project, lambda d: d["features"][5].update(encode="onehott"))
    msg = _fails(fresh_project, "spec", "check")
    assert "features[5]" in msg and "unknown encoder 'onehott'" in msg
    assert "onehot" in msg  # lists what is supported


def test_spec_feature_on_a_missing_column(fresh_project):
    _edit_spec(fresh_project, lambda d: d["features"].append({"column": "karma"}))
    msg = _fails(fresh_project, "run")
    assert "features[9].column: 'karma' is not in the data" in msg


def test_spec_invalid_yaml(fresh_project):
    (fresh_project / "mlsd.yaml").write_text("name: [unclosed\n")
    msg = _fails(fresh_project, "spec", "check")
    assert "not valid YAML" in msg and "line" in msg


def test_no_spec_anywhere(tmp_path):
    msg = _fails(tmp_path, "run")
    assert "no mlsd.yaml" in msg


def test_missing_data_file(fresh_project):
    (fresh_project / "data/posts_log.jsonl").unlink()
    msg = _fails(fresh_project, "run")
    assert "data/posts_log.jsonl" in msg and "no such data file" in msg


def test_empty_data_file(fresh_project):
    (fresh_project / "data/posts_export.csv").write_text("")
    msg = _fails(fresh_project, "run")
    assert "data/posts_export.csv" in msg and "empty" in msg


def test_csv_with_a_wrong_header(fresh_project):
    path = fresh_project / "data/posts_export.csv"
    text = path.read_text(encoding="utf-8")
    first, rest = text.split("\n", 1)
    path.write_text(first.replace(",likes,", ",lieks,") + "\n" + rest,
                    encoding="utf-8")
    msg = _fails(fresh_project, "run")
    assert "data/posts_export.csv, line 1" in msg
    assert "missing column(s) ['likes']" in msg
    assert "unexpected column(s) ['lieks']" in msg


def test_bad_schema_file(fresh_project):
    path = fresh_project / "schemas/posts_log.yaml"
    path.write_text(path.read_text().replace("likes: int64", "likes: integer"))
    msg = _fails(fresh_project, "run")
    assert "schemas/posts_log.yaml: columns.likes: unknown type 'integer'" in msg


def test_unknown_model_and_source(fresh_project):
    assert "no model" in _fails(fresh_project, "lineage", "nope")
    assert "unknown source 'nope'" in _fails(fresh_project, "schema", "show", "nope")


def test_init_refuses_to_overwrite(fresh_project):
    assert "already exists" in _fails(fresh_project.parent, "init",
                                      fresh_project.name)


def test_usage_error_is_exit_2(fresh_project):
    proc = run_cli("run", "--no-such-flag", cwd=fresh_project, check=False)
    assert proc.returncode == 2


def test_spec_check_and_schema(fresh_project):
    proc = run_cli("spec", "check", cwd=fresh_project)
    assert "valid" in proc.stdout
    schema = json.loads(run_cli("spec", "schema", cwd=fresh_project).stdout)
    assert schema["title"].startswith("mlsd project spec")
    assert {"problem", "sources", "features", "split", "validate"} <= set(
        schema["properties"])


def test_schema_show_frozen_and_inferred(fresh_project):
    doc = json.loads(run_cli("schema", "show", "posts_export", "--json",
                             cwd=fresh_project).stdout)
    assert doc["frozen"] is True and doc["columns"]["likes"] == "int64"
    (fresh_project / "schemas/posts_log.yaml").unlink()
    doc = json.loads(run_cli("schema", "show", "posts_log", "--json",
                             cwd=fresh_project).stdout)
    assert doc["frozen"] is False
    assert not (fresh_project / "schemas/posts_log.yaml").exists()


def test_schema_infer_refreezes_and_lists_changes(fresh_project):
    """`mlsd schema infer` redoes a hand-edited schema from the data, keeps the
    old file, and names each column whose type changed."""
    path = fresh_project / "schemas/posts_export.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["columns"]["likes"] = "string"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    res = json.loads(run_cli("schema", "infer", "posts_export", "--json",
                             cwd=fresh_project).stdout)
    assert res["changes"] == [{"column": "likes", "before": "string",
                               "after": "int64"}]
    assert yaml.safe_load(path.read_text())["columns"]["likes"] == "int64"
    backup = fresh_project / res["backup"]
    assert yaml.safe_load(backup.read_text())["columns"]["likes"] == "string"
    proc = run_cli("schema", "infer", "posts_export", cwd=fresh_project)
    assert "no column changed" in proc.stdout


@pytest.mark.slow
def test_first_run_freezes_the_inferred_schema(fresh_project):
    """Without declared schemas, the run infers them by a robust vote (planted
    bad numbers do not turn numeric columns into text) and freezes them."""
    declared = {}
    for source in ("posts_export", "posts_log"):
        path = fresh_project / f"schemas/{source}.yaml"
        declared[source] = yaml.safe_load(path.read_text())["columns"]
        path.unlink()
    s = json.loads(run_cli("run", "--json", cwd=fresh_project).stdout)
    for source in ("posts_export", "posts_log"):
        frozen = yaml.safe_load((fresh_project / f"schemas/{source}.yaml"
                                 ).read_text())
        assert frozen["columns"] == declared[source]
        assert frozen["origin"]["rows_sampled"]
    assert all(src["schema_frozen"] for src in s["sources"])
    planted = json.loads((fresh_project / "data/defects.json").read_text())
    assert s["totals"]["rows_quarantined"] == len(planted["defects"])


HEAVY = ("sklearn", "lightgbm", "scipy", "duckdb", "deltalake", "pyarrow",
         "pandas", "ibis", "shap",
         # not heavy, but 30 ms of start-up: they load when a table or a
         # progress bar is shown (benchmarks/startup.py)
         "rich.table", "rich.progress")


def _heavy_loaded(folder: Path, *args: str) -> dict[str, list[str]]:
    """Run ``mlsd ARGS`` in a fresh interpreter, in-process; return the heavy
    libraries loaded by importing the CLI, and then by the command."""
    probe = (
        "import json, sys\n"
        f"heavy = set({HEAVY!r})\n"
        "loaded = lambda: sorted(({m.split('.')[0] for m in sys.modules}\n"
        "                         | set(sys.modules)) & heavy)\n"
        "import mlsd.cli, mlsd.spec\n"
        "out = {'import': loaded()}\n"
        "try:\n"
        f"    mlsd.cli.app({list(args)!r}, standalone_mode=False)\n"
        "except Exception as err:\n"
        "    out['error'] = type(err).__name__\n"
        "out['command'] = loaded()\n"
        "print('PROBE', json.dumps(out))\n")
    return run_probe(probe, cwd=folder, timeout=60)


def test_the_cli_and_the_spec_import_nothing_heavy(fresh_project):
    """`mlsd --help` and `mlsd spec check` (also on a spec with a typo) load
    neither the ML nor the storage libraries."""
    assert _heavy_loaded(fresh_project, "spec", "check") == {"import": [],
                                                            "command": []}
    path = fresh_project / "mlsd.yaml"
    path.write_text(path.read_text().replace("split:", "splt:"))
    assert _heavy_loaded(fresh_project, "spec", "check") == {
        "import": [], "error": "SpecError", "command": []}


@pytest.mark.slow
def test_models_group_lists_by_default_and_shows_one(ran_project):
    folder, s = ran_project
    model_id = s["model"]["model_id"]
    listed = run_cli("models", cwd=folder).stdout
    assert model_id in listed and "best baseline" in listed
    assert json.loads(run_cli("models", "--json", cwd=folder).stdout) == json.loads(
        run_cli("models", "list", "--json", cwd=folder).stdout)
    shown = json.loads(run_cli("models", "show", model_id[:12], "--json",
                               cwd=folder).stdout)
    assert shown["model_id"] == model_id and shown["metrics"] == s["model"]["metrics"]
    assert shown["lineage"]["training"]["dataset"] == "training/forum-spam"
    text = run_cli("models", "show", model_id, cwd=folder).stdout
    assert "model (test)" in text and model_id in text
    assert "no model 'zzz'" in _fails(folder, "models", "show", "zzz")
    # listing reads the catalog only (and prints a table)
    assert _heavy_loaded(folder, "models")["command"] == ["rich.table"]


def test_stages_lists_reads_writes_and_where_a_run_can_start(fresh_project):
    rows = json.loads(run_cli("stages", "--json", cwd=fresh_project).stdout)
    assert [r["stage"] for r in rows] == ["ingest", "table", "sample", "split",
                                          "features", "train", "audit", "register",
                                          "report", "track"]
    by = {r["stage"]: r for r in rows}
    assert by["split"]["reads"] == {"training": "dataset", "sample": "dataset"}
    assert by["train"]["can_start_here"] is False
    assert by["audit"]["module"] == "mlsd.audit"
    msg = _fails(fresh_project, "run", "--from", "train")
    assert "'features', which stage 'features' keeps in memory only" in msg
    assert ("Start from one of: ingest, table, sample, split, features, audit, "
            "track" in msg)
    assert not (fresh_project / ".mlsd").exists()  # said before anything ran


def test_declaring_the_stages_loads_no_ml_library():
    """The stage list imports each stage's declaration, not its libraries:
    `mlsd ingest` and `mlsd run --until split` pay for no model code."""
    import subprocess
    import sys

    probe = ("import sys, mlsd.pipeline\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'sklearn', 'lightgbm', 'shap', 'plotly', 'jinja2', 'ibis'}))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _command_paths():
    import typer.main

    from mlsd.cli import app

    def walk(cmd, path):
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])
    return list(walk(typer.main.get_command(app), []))


def test_help_shows_no_value_type_for_flags_and_json_is_a_flag_everywhere():
    """Every `--help` names what an option takes; a flag takes nothing (Typer
    would print `<bool>`), and `--json` is a flag on every command that has it
    (`mlsd audit --json PATH` used to take a file)."""
    from typer.testing import CliRunner

    from mlsd.cli import app

    runner = CliRunner()
    with_json = 0
    for path in _command_paths():
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (path, res.output)
        assert "<bool>" not in res.output, path
        for line in res.output.splitlines():
            m = re.match(r"^[│|\s]*--json\s+(\S+)", line)
            if m:
                with_json += 1
                assert m.group(1) == "Print", (path, line)
    assert with_json >= 10


def test_a_time_split_on_text_or_bool_is_refused_by_spec_check(fresh_project):
    """`mlsd spec check` reads the schemas: a time split on a text or bool
    column is named at spec time, not found by the audit after training."""
    for column, typ in (("text", "string"), ("is_spam", "bool")):
        _edit_spec(fresh_project, lambda d, c=column: d["split"].update(
            strategy="time", time=c))
        msg = _fails(fresh_project, "spec", "check")
        assert f"split.time: a time split orders rows by time, but {column!r} is " \
               f"{typ} in schemas/posts_export.yaml" in msg, msg
    msg = _fails(fresh_project, "run")
    assert "split.time" in msg and "ingest" not in msg


def test_a_text_regression_target_is_refused_before_anything_runs(fresh_project):
    def edit(d):
        d["problem"] = {"task": "regression", "target": "author_country"}
        d["features"] = [f for f in d["features"]
                         if f["column"] != "author_country"]
    _edit_spec(fresh_project, edit)
    msg = _fails(fresh_project, "spec", "check")
    assert "problem.target: a regression target must be numbers, but " \
           "'author_country' is string" in msg


def _mini_project(folder: Path, csv_text: str) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "m.csv").write_text(csv_text)
    (folder / "mlsd.yaml").write_text(yaml.safe_dump({
        "name": "mini", "problem": {"task": "binary", "target": "y", "positive": 1},
        "sources": {"m": {"path": "data/m.csv"}},
        "features": [{"column": "x"}, {"column": "z"}]}))
    return folder


ROWS = "".join(f"{i},{i % 7}.5,{i % 2}\n" for i in range(40))


def test_a_semicolon_csv_read_with_commas_names_the_delimiter(tmp_path):
    folder = _mini_project(tmp_path / "p", "x;z;y\n" + ROWS.replace(",", ";"))
    for cmd in (["spec", "check"], ["ingest"]):
        msg = _fails(folder, *cmd)
        assert "data/m.csv, line 1: the header read with delimiter ',' is one " \
               "column 'x;z;y'; set `delimiter: ';'` on the source" in msg, msg


def test_a_header_only_file_freezes_no_schema(tmp_path):
    """Types voted on by no row are guesses: the first load with rows infers
    them (a header-only file used to freeze every column as text)."""
    folder = _mini_project(tmp_path / "p", "x,z,y\n")
    run_cli("ingest", cwd=folder)
    assert not (folder / "schemas" / "m.yaml").exists()
    (folder / "data" / "m.csv").write_text("x,z,y\n" + ROWS)
    run_cli("spec", "check", cwd=folder)
    run_cli("ingest", cwd=folder)
    frozen = yaml.safe_load((folder / "schemas" / "m.yaml").read_text())
    assert frozen["columns"] == {"x": "int64", "z": "float64", "y": "int64"}


def test_a_frozen_schema_that_does_not_fit_names_the_file_and_the_fix(tmp_path):
    folder = _mini_project(tmp_path / "p", "x,z,y\n" + ROWS)
    (folder / "schemas").mkdir()
    (folder / "schemas" / "m.yaml").write_text(yaml.safe_dump(
        {"columns": {"x": "string", "z": "float64", "y": "int64"}}))
    msg = _fails(folder, "spec", "check")
    assert "features[0]: 'x' is string in schemas/m.yaml (`mlsd schema infer m` " \
           "infers it again from the data)" in msg, msg


def _set_encoding(folder: Path, encoding: str) -> None:
    _edit_spec(folder, lambda d: d["sources"]["m"].update(encoding=encoding))


def test_a_utf16_csv_names_the_encoding_then_reads_with_it(tmp_path):
    folder = _mini_project(tmp_path / "p", "")
    text = "x,z,y\n" + ROWS.replace("0.5", "0.5")
    (folder / "data" / "m.csv").write_text(text, encoding="utf-16")
    msg = _fails(folder, "ingest")
    assert "data/m.csv: the file is UTF-16 (it starts with a byte order mark); " \
           "set `encoding: utf-16` on the source" in msg
    _set_encoding(folder, "utf-16")
    res = json.loads(run_cli("ingest", "--json", cwd=folder).stdout)
    assert res["sources"][0]["rows_stored"] == 40
    (folder / "data" / "m.csv").write_bytes(text.encode("utf-16-le"))  # no BOM
    _set_encoding(folder, "utf-8")
    assert "set `encoding: utf-16-le`" in _fails(folder, "ingest")


def test_a_latin1_csv_says_which_encoding_to_set_and_loses_no_row(tmp_path):
    folder = _mini_project(tmp_path / "p", "")
    cafe = "caf\u00e9"
    body = "".join(f"{i},{i % 7}.5,{i % 2},{cafe if i % 4 == 0 else 'tea'}\n"
                   for i in range(40))
    (folder / "data" / "m.csv").write_bytes(("x,z,y,note\n" + body).encode(
        "cp1252"))
    proc = run_cli("ingest", cwd=folder)
    assert "m: 10 row(s) have bytes not valid utf-8; the file may be cp1252: set " \
           "`encoding: cp1252` on the source" in proc.stderr
    proc = run_cli("ingest", "--json", cwd=folder)
    src = json.loads(proc.stdout)["sources"][0]
    assert (src["rows_stored"], src["rows_quarantined"]) == (30, 10)
    assert src["reasons"] == {"(record): encoding": 10}
    _set_encoding(folder, "cp1252")
    src = json.loads(run_cli("ingest", "--json", cwd=folder).stdout)["sources"][0]
    assert (src["rows_stored"], src["rows_quarantined"]) == (40, 0)


def _in_terminal(args: list[str], cwd: Path, columns: int) -> str:
    """What a command draws on a terminal `columns` wide (a pseudo-terminal)."""
    import fcntl
    import os
    import pty
    import struct
    import sys
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, its output on the terminal
        os.chdir(cwd)
        os.execv(sys.executable, [sys.executable, "-m", "mlsd", *args])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    out = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    os.waitpid(pid, 0)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))
    return text.replace("\r", "\n")


def test_progress_names_are_never_cut_on_a_narrow_terminal(tmp_path):
    """The stage and source names, and the counts, stay whole at 64 columns
    (`ingest posts…` and `140…` for 14000 before); the notes give way."""
    folder = _mini_project(tmp_path / "p", "x,z,y\n" + ROWS)
    name = "a_rather_long_source_name"
    _edit_spec(folder, lambda d: d.update(sources={name: d["sources"]["m"]}))
    text = _in_terminal(["ingest"], folder, 64)
    drawn = [ln for ln in text.splitlines() if re.search(r"\d:\d\d:\d\d", ln)]
    assert drawn, text  # the live display drew progress lines with elapsed time
    assert any(f"ingest {name}" in ln for ln in drawn), drawn
    table = [ln for ln in text.splitlines() if ln.startswith("│ a_rather")]
    assert table and name in table[0] and " 40 " in table[0], table


def test_the_run_summary_says_the_top_quarantine_reasons_on_either_engine(ran_project):
    """The printed summary names the top quarantine reasons (a Spark run's
    lines once hid them on DuckDB), and on Spark where each part ran."""
    from mlsd.cli._common import out
    from mlsd.cli._run import print_summary

    _, summary = ran_project
    assert summary["top_reasons"]
    with out.capture() as cap:
        print_summary(summary)
    text = cap.get()
    assert "Top quarantine reasons:" in text and "on spark" not in text
    on_spark = {**summary, "engine": "spark local[2]",
                "features": {**summary["features"], "analysed_on": "spark local[2]"},
                "fit": {**summary["fit"], "engine": "spark"}}
    with out.capture() as cap:
        print_summary(on_spark)
    text = cap.get()
    for line in ("Top quarantine reasons:",
                 "Files read and validated on spark local[2]",
                 "Features analysed and applied on spark local[2]",
                 "Model fitted on the driver"):
        assert line in text
