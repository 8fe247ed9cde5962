"""mlsd: the whole life of a production ML system, data first.

Raw sources are extracted, validated (nothing is lost: every rejected row is kept
with its reasons), stored as versioned lake tables, split honestly, turned into
features that behave the same in training and serving, used to train a model next
to simple baselines, audited for leakage, reported, and served. Every artifact can
be traced back to the rows it came from.

``mlsd.run(path)`` runs the stages from Python, ``mlsd.init(folder, data,
target=...)`` proposes a project for your own data; ``mlsd`` is the command line.
"""

import os

# The one place the version is written: pyproject.toml reads it from here
# (setuptools dynamic version), so start-up needs no importlib.metadata (30 ms).
__version__ = "0.1.0"

# LightGBM and scikit-learn run on OpenMP (GNU libgomp), whose idle threads spin
# on a core for a while before sleeping. Next to other work that spinning takes
# the cores the work needs: with both cores busy, the example's training took
# 14-62 s with libgomp's default spinning, 8-9 s with threads that sleep when
# idle, which cost little on an idle machine (4.0-4.7 s against 3.9-4.0 s; see
# docs/benchmarks.md). libgomp reads this once, when it loads, so it is set
# before any mlsd module imports LightGBM; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

def run(project=None, **kwargs):
    """Run the stages on a project folder; see :func:`mlsd.pipeline.run`.

    ``mlsd.run("demo")`` runs them all; ``until="split"`` stops after a stage,
    ``from_="features"`` starts at one, reusing what the stages before it
    persisted; ``stages=[...]`` runs your own list of stages.
    """
    from .pipeline import run as _run

    return _run(project, **kwargs)


def init(folder, source, **kwargs):
    """Create a project for your own data; see :func:`mlsd.scaffold.init_from`.

    ``mlsd.init("churn", "customers.csv", target="churned")`` copies the file,
    freezes its schema and writes a commented ``mlsd.yaml``; it returns the
    proposal (task, split, each column's feature or why it is left out).
    """
    from .scaffold import init_from

    return init_from(folder, source, **kwargs)


__all__ = ["__version__", "init", "run"]
