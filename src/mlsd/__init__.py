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
# on a core for a while before sleeping (GOMP_SPINCOUNT, 300,000 turns by
# default). Next to other work that spinning takes the cores the work needs:
# with both cores busy, the example's training took 14-62 s spinning, 8-9 s
# with threads that sleep when idle. But threads that sleep at once
# (OMP_WAIT_POLICY=PASSIVE alone) are woken for every parallel region: a
# 640-row, 100-tree fit took 0.59 s on two threads against 0.08 s with a short
# spin, and a 100,000-row one 2.4 s against 1.4-1.6 s (docs/benchmarks.md). So
# threads spin briefly (10,000 turns, well under a millisecond), then sleep;
# libomp-based builds read the policy only. libgomp reads both once, when it
# loads, so they are set before any mlsd module imports LightGBM; a user's own
# setting of either wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["GOMP_SPINCOUNT"] = "10000"

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
