"""Helpers the tests share: run the CLI in a separate process, copy projects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path, check: bool = True, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m mlsd ARGS`` in a separate process."""
    proc = subprocess.run(
        [sys.executable, "-m", "mlsd", *args], cwd=cwd, capture_output=True,
        text=True, timeout=timeout, env={**os.environ, "NO_COLOR": "1", **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"mlsd {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_probe(code: str, *, cwd: Path, timeout: float = 120):
    """Run ``code`` in a fresh interpreter; it prints one line ``PROBE <json>``,
    whose value is returned (for what a command imports, measured in-process)."""
    import json

    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE "))


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".mlsd"))
    return dst


def erase_and_reexport(project: Path, author: str) -> Path:
    """Erase an author of the example's posts_log (`mlsd lake delete`), then
    re-export the log: the same rows in a second file, which the spec now
    reads through a glob. The data folder."""
    run_cli("lake", "delete", "posts_log", "--where", f"author_id = '{author}'",
            cwd=project)
    data = project / "data"
    shutil.copy(data / "posts_log.jsonl", data / "posts_log_2.jsonl")
    spec = project / "mlsd.yaml"
    spec.write_text(spec.read_text().replace("path: data/posts_log.jsonl",
                                             "path: 'data/posts_log*.jsonl'"))
    return data


def require_service(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Skip when a server is not answering, or fail under MLSD_REQUIRE_SERVICES=1."""
    import socket

    import pytest

    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as err:
        reason = f"{name} is not answering on {host}:{port} ({err})"
    if os.environ.get("MLSD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and MLSD_REQUIRE_SERVICES=1 asks for it")
    pytest.skip(reason)


CHROMIUM = "/usr/bin/chromium"  # Debian's package; nothing may download a browser


def render_in_chromium(path: Path, *, wait_selector: str = ".main-svg"
                       ) -> dict:
    """Open a local HTML file in headless Chromium (Playwright driving Debian's
    chromium) and return the script errors, the console errors and the number
    of rendered Plotly charts. Skips when Chromium is missing, or fails under
    MLSD_REQUIRE_SERVICES=1."""
    import pytest

    if not Path(CHROMIUM).exists():
        reason = f"Chromium is not installed ({CHROMIUM}; Debian package chromium)"
        if os.environ.get("MLSD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and MLSD_REQUIRE_SERVICES=1 asks for it")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    errors, console = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: console.append(msg.text)
                    if msg.type == "error" else None)
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            page.wait_for_selector(wait_selector, timeout=30_000)
            charts = page.eval_on_selector_all(
                ".plotly-graph-div", "els => els.filter(e => e.querySelector("
                "'.main-svg') && e.getBoundingClientRect().width > 100).length")
            divs = page.eval_on_selector_all(".plotly-graph-div",
                                             "els => els.length")
            text = page.inner_text("body")
        finally:
            browser.close()
    return {"errors": errors, "console_errors": console, "charts": charts,
            "chart_divs": divs, "text": text}


def external_refs(html: str) -> list[tuple[str, str]]:
    """The tags of an HTML page that load something from elsewhere (a script,
    a style sheet, or any src/href to another host)."""
    from html.parser import HTMLParser

    class Refs(HTMLParser):
        def __init__(self):
            super().__init__()
            self.external: list[tuple[str, str]] = []

        def handle_starttag(self, tag, attrs):
            for name, value in attrs:
                if name in ("src", "href") and value and (
                        "//" in value or tag in ("script", "link")):
                    self.external.append((tag, value))

    parser = Refs()
    parser.feed(html)
    return parser.external


def diabetes_project(folder: Path) -> Path:
    """A project made by `mlsd init` from scikit-learn's diabetes data (442
    rows, regression on `target`) in ``folder/proj``; not yet run."""
    from sklearn.datasets import load_diabetes

    import mlsd

    data = folder / "diabetes.csv"
    load_diabetes(as_frame=True).frame.to_csv(data, index=False)
    mlsd.init(folder / "proj", str(data), target="target")
    return folder / "proj"


def stop_with_sigterm(proc: subprocess.Popen, ready, *, wait: float = 120) -> dict:
    """Once ``ready()`` holds (or ``wait`` seconds passed), SIGTERM to
    ``proc``, a command printing its JSON result: that result, the command
    having ended cleanly (exit 0) within a minute."""
    import json
    import signal
    import time

    deadline = time.monotonic() + wait
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)


def big_csv_project(folder, rows: int, *, quoted_break_at: int | None = None,
                     rule: str = "unique"):
    """A project whose one CSV file holds ``rows`` rows, some breaking a rule
    (type, range, a repeated key), and optionally a quoted line break."""
    import yaml

    (folder / "schemas").mkdir(parents=True)
    lines = ["id,n,x,note"]
    for i in range(rows):
        key = i - 1 if i % 97 == 5 else i  # a repeated key now and then
        n = "12x" if i % 89 == 3 else ("-4" if i % 83 == 7 else str(i % 1000))
        note = f"plain {i}"
        if quoted_break_at is not None and i == quoted_break_at:
            note = '"two\nlines"'
        lines.append(f"{key},{n},{i / 7:.4f},{note}")
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    (folder / "mlsd.yaml").write_text(yaml.safe_dump({
        "name": "spans", "problem": {"task": "regression", "target": "x"},
        "sources": {"big": {"path": "data.csv", "key": "id"}},
        "validate": {"required": ["id"], "ranges": {"n": [0, None]},
                     "unique": ["id"] if rule == "unique" else []},
        **({"transform": {"dedupe": {"key": ["id"]}}} if rule == "dedupe" else {}),
        "features": [{"column": "n"}]}))
    (folder / "schemas" / "big.yaml").write_text(yaml.safe_dump({"columns": {
        "id": "int64", "n": "int64", "x": "float64", "note": "string"}}))
