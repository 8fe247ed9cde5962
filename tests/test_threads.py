"""Threads for LightGBM: one for small inputs, the free cores otherwise, and
the same model whatever the count."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd import _threads


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(_threads, "_last", None)
    monkeypatch.setattr(_threads, "SAMPLE_SECONDS", 0.0)


def _counters(monkeypatch, busy_share: float, cores: int = 4):
    ticks = iter([(0, 0), (int(1000 * busy_share), 1000)])
    monkeypatch.setattr(_threads, "_cpu_times", lambda: next(ticks))
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(_threads, "usable_cores", lambda: cores)


def test_small_inputs_take_one_thread_without_measuring(monkeypatch):
    def boom():
        raise AssertionError("a small input must not wait for a measure")
    monkeypatch.setattr(_threads, "_cpu_times", boom)
    assert _threads.threads_for(1) == 1
    assert _threads.threads_for(_threads.SMALL_ROWS - 1, limit=8) == 1


@pytest.mark.parametrize(("busy", "free"), [(0.0, 4), (0.25, 3), (0.5, 2),
                                             (0.74, 1), (1.0, 1)])
def test_free_cores_are_the_cores_others_leave_idle(monkeypatch, busy, free):
    _counters(monkeypatch, busy)
    assert _threads.free_cores() == free


def test_the_limit_caps_and_a_measure_is_reused(monkeypatch):
    _counters(monkeypatch, 0.0)
    assert _threads.threads_for(50_000, limit=2) == 2
    # the counters are exhausted: a second call within seconds reuses the measure
    assert _threads.threads_for(50_000) == 4


def test_the_machine_counters_are_read():
    """On Linux the real /proc/stat is read; elsewhere the load average."""
    free = _threads.free_cores()
    assert 1 <= free <= _threads.usable_cores()


def test_the_model_is_the_same_whatever_the_thread_count():
    from mlsd.models import LightGBMLearner

    rng = np.random.default_rng(2)
    X = rng.normal(size=(12_000, 12))
    X[rng.random(X.shape) < 0.05] = np.nan
    y = (np.nan_to_num(X[:, 0]) + rng.normal(size=12_000) > 0).astype(int)
    preds = []
    for threads in (1, 2, 3):
        learner = LightGBMLearner(task="binary", n_classes=2, seed=0,
                                  params={"n_estimators": 40, "num_threads": threads})
        preds.append(learner.fit(X[:10_000], y[:10_000]).predict(X[10_000:]))
    assert np.array_equal(preds[0], preds[1]) and np.array_equal(preds[0], preds[2])
