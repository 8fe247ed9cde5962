"""What the serving benchmarks share: the trained example and a free port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trained_example(work: Path | None, prefix: str) -> tuple[Path, Path]:
    """The forum-spam example with a trained model under ``work`` (made the
    first time, reused after): the work folder and the project."""
    from mlsd.examples import write

    work = work or Path(tempfile.mkdtemp(prefix=prefix))
    project = work / "demo"
    if not (project / ".mlsd" / "artifacts").exists():
        shutil.rmtree(project, ignore_errors=True)
        write("forum-spam", project)
        subprocess.run([sys.executable, "-m", "mlsd", "run", "--until", "train"],
                       cwd=project, check=True, capture_output=True)
    return work, project


def trained_numbers(work: Path | None, prefix: str) -> tuple[Path, Path]:
    """A project of ten numbers and no text (scikit-learn's diabetes data,
    regression, `mlsd init --from`) with a trained model under ``work``: the
    work folder and the project; its rows are ``work/diabetes.csv``."""
    from sklearn.datasets import load_diabetes

    import mlsd

    work = work or Path(tempfile.mkdtemp(prefix=prefix))
    project = work / "numbers"
    if not (project / ".mlsd" / "artifacts").exists():
        shutil.rmtree(project, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "diabetes.csv"
        load_diabetes(as_frame=True).frame.to_csv(data, index=False)
        mlsd.init(project, str(data), target="target")
        subprocess.run([sys.executable, "-m", "mlsd", "run", "--until", "train"],
                       cwd=project, check=True, capture_output=True)
    return work, project
