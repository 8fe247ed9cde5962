"""Propose a project for a user's own data: the task, the split, and a feature
entry per column, each with the reason a careful engineer would give."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from .._names import ID_WORDS, name_words, names_entity
from ..errors import DataError
from ..spec import SourceSpec, SqlSourceSpec, ValidateSpec
from ._profile import (
    ColumnProfile,
    copies_target,
    determined_by_target,
    profile,
    typed_sample,
)

MAX_CLASSES = 50
"""More distinct text labels than this is not a classification task init proposes."""
MAX_INT_CLASSES = 20
"""Whole numbers with at most this many values are classes; more, an amount."""
ONEHOT_MAX = 50
"""Text columns with at most this many values are one-hot encoded; more are hashed."""
MIN_TIME_VALUES = 10
"""A time split needs at least this many distinct times to cut in three."""
FREE_TEXT_TOKENS = 3.0
"""Text whose values hold this many words on average is free text (n-grams)."""

POSITIVE_WORDS = ("1", "true", "yes", "y", "t", "positive", "pos")
TIME_TOKENS = {"time", "date", "timestamp", "ts", "at", "datetime", "created",
               "day", "when", "event", "posted", "updated"}
METRICS = {
    "binary_rare": ["pr_auc", "recall", "f1"],
    "binary": ["roc_auc", "f1", "accuracy"],
    "multiclass": ["macro_f1", "balanced_accuracy", "accuracy"],
    "multilabel": ["micro_pr_auc", "micro_f1", "macro_f1"],
    "regression": ["rmse", "mae", "r2"],
}
LABEL_SEPARATORS = ("|", ";")
"""What may join a row's labels in a text target (a comma is too common in
prose to tell label sets from sentences)."""
LABEL_SET_SHARE = 0.2
"""A text target is a set of labels when this share of its values holds
several (a JSON list, or labels joined by one separator) and the labels are
fewer than the distinct values."""




def _pct(x: float) -> str:
    if 0 < x < 0.001:
        return "<0.1%"
    return f"{100 * x:.0f}%" if x >= 0.1 or x == 0 else f"{100 * x:.1f}%"


@dataclass
class Choice:
    """What init does with one column, and why."""

    column: str
    why: str
    feature: dict[str, Any] | None = None  # the `features:` entry, or left out
    names_rows: bool = False  # a row id: unique, it could key the source

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "feature": self.feature, "why": self.why}


@dataclass
class Proposal:
    """A project for one source: what `mlsd.yaml` will say, with the reasons."""

    name: str
    source_name: str
    source: dict[str, Any]
    source_note: str
    target: str
    task: str
    task_why: str
    positive: Any = None
    separator: str | None = None  # multilabel: what joins a row's labels
    metrics: list[str] = field(default_factory=list)
    split: dict[str, Any] = field(default_factory=dict)
    split_why: str = ""
    choices: list[Choice] = field(default_factory=list)
    allow_shared: list[str] = field(default_factory=list)
    required: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: int = 0
    command: str = ""
    schema: Any = None  # the DataSchema inferred, frozen by init

    @property
    def features(self) -> list[Choice]:
        return [c for c in self.choices if c.feature is not None]

    @property
    def left_out(self) -> list[Choice]:
        return [c for c in self.choices if c.feature is None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": {self.source_name: self.source},
            "rows_profiled": self.rows, "target": self.target, "task": self.task,
            "task_why": self.task_why, "positive": self.positive,
            "separator": self.separator,
            "metrics": self.metrics, "split": self.split, "split_why": self.split_why,
            "features": [c.to_dict() for c in self.features],
            "left_out": [c.to_dict() for c in self.left_out],
            "allow_shared": self.allow_shared, "required": self.required,
            "notes": self.notes,
        }

    def yaml(self) -> str:
        """``mlsd.yaml``, every choice commented with its reason."""
        out = [f"# mlsd project proposed by `{self.command}`" if self.command
               else "# mlsd project proposed by `mlsd init --from`",
               f"# from {self.rows} rows of {self.source_note}. Each choice says why;",
               "# edit any of them. `mlsd spec schema` prints the JSON Schema of this "
               "file.",
               f"name: {_flow(self.name)}", "seed: 42", "problem:",
               _line(f"  task: {self.task}", self.task_why),
               f"  target: {_flow(self.target)}"]
        if self.task == "binary":
            out.append(_line(f"  positive: {_flow(self.positive)}",
                             "the class the model looks for"))
        if self.task == "multilabel":
            out.append(_line(f"  separator: {_flow(self.separator or '|')}",
                             "what joins a row's labels (JSON lists need none)"))
        out.append(f"  metrics: {_flow(self.metrics)}")
        if self.task == "binary":
            out.append(_line("  threshold: f1", "decision threshold chosen on "
                             "validation for F1"))
        out += ["sources:", f"  {_flow(self.source_name)}:"]
        for k, v in self.source.items():
            out.append(f"    {k}: {_flow(v)}")
        if self.required:
            out += ["validate:", _line(f"  required: {_flow(self.required)}",
                                       "the split needs them: a row without one "
                                       "is quarantined")]
        out.append("split:")
        for i, (k, v) in enumerate(self.split.items()):
            out.append(_line(f"  {k}: {_flow(v)}", self.split_why if i == 0 else ""))
        out.append("features:")
        for c in self.features:
            out.append(_line(f"  - {_flow(c.feature)}", c.why))
        if self.left_out:
            out.append("# left out:")
            for c in self.left_out:
                out.append(f"#   {c.column}: {c.why}")
        out += ["model:", "  kind: lightgbm",
                "  params: {n_estimators: 300, learning_rate: 0.05}"]
        if self.task != "regression":
            out.append(_line("  class_weight: balanced", "rarer classes weigh as "
                             "much as common ones"))
        if self.allow_shared:
            out += ["audit:", _line(f"  allow_shared: {_flow(self.allow_shared)}",
                                    "entities recur over time: they may span "
                                    "splits")]
        for note in self.notes:
            out.append(f"# note: {note}")
        return "\n".join(out) + "\n"


def _flow(value: Any) -> str:
    """A YAML value on one line (quoted only when it must be)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20,
                          allow_unicode=True, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _line(text: str, comment: str) -> str:
    if not comment:
        return text
    return f"{text:<30} # {comment}"


def propose(root: Path, source_name: str, source: dict[str, Any], *, target: str,
            time: str | None = None, key: str | None = None,
            group: str | None = None, task: str | None = None,
            positive: Any = None, name: str | None = None,
            source_note: str = "") -> Proposal:
    """Read a source (a file under ``root``, or a SQL table) and propose a
    project for predicting ``target``: task, metrics, split and features.

    Raises
    ------
    DataError
        When a named column is absent, the source has no rows, or the target
        cannot be learned (one value, text for regression, ...).
    """
    from ..etl._load import connector_for
    from ..etl._schema import infer_schema

    rules = ValidateSpec()
    spec = SqlSourceSpec(**source) if "url" in source else SourceSpec(**source)
    connector = connector_for(source_name, spec, root)
    display = source.get("path") or f"{source.get('url')} table {source.get('table')}"
    schema = infer_schema(connector, null_values=rules.null_values,
                          threshold=rules.infer_threshold)
    for flag, col in (("--target", target), ("--time", time), ("--key", key),
                      ("--group", group)):
        if col is not None and col not in schema.columns:
            near = difflib.get_close_matches(col, list(schema.columns), n=1)
            raise DataError(
                f"{display}: {flag} {col!r} is not a column"
                + (f"; did you mean {near[0]!r}?" if near else "")
                + f" Columns: {', '.join(schema.columns)}")
    table, unreadable = typed_sample(connector, schema, rules.null_values)
    close = getattr(connector, "close", None)
    if close:
        close()
    if table.num_rows == 0:
        raise DataError(f"{display}: no data rows to learn from (a header alone, or "
                        f"no readable row); add rows, then run `mlsd init` again")
    profiles = profile(table, schema)
    tp = profiles[target]
    prop = Proposal(name=name or source_name, source_name=source_name,
                    source=source, source_note=source_note or display,
                    target=target, task="", task_why="", rows=table.num_rows,
                    schema=schema)
    if unreadable:
        read = table.num_rows + unreadable
        prop.notes.append(f"{unreadable} row(s) of the first {read} could not be "
                          f"read; `mlsd run` puts them in the quarantine with the "
                          f"reason (`mlsd quarantine show`)")
    sets = _label_sets(table.column(target).to_pylist(), forced=task == "multilabel")
    if sets is not None and task in (None, "multilabel") and tp.type == "string":
        prop.task, prop.separator, prop.task_why = "multilabel", sets[0], sets[1]
    elif task == "multilabel":
        raise DataError(f"--task multilabel: {target!r} holds no label sets (a "
                        f"JSON list, or labels joined by "
                        f"{' or '.join(LABEL_SEPARATORS)})")
    else:
        prop.task, prop.positive, prop.task_why = _task(tp, task, positive)
    if tp.missing:
        prop.notes.append(f"{tp.missing} row(s) have no {target}: they are stored "
                          f"but neither trained nor measured on")
    prop.metrics = list(_metrics(prop.task, tp))
    if key is not None:
        prop.source["key"] = key
    regression = prop.task == "regression"
    target_col = table.column(target).combine_chunks()
    group = group or _entity(profiles, exclude={target, key, time})
    time_col, time_why = _time_column(profiles, time, exclude={target, key, group})
    for col, p in profiles.items():
        if col == target:
            continue
        choice = _choose(p, table.column(col).combine_chunks(), target_col,
                         regression=regression, key=key)
        if choice.feature is not None and col == group and time_col is None:
            choice = Choice(col, "the group of the group split: its values in the "
                            "test rows are never seen in training")
        if choice.names_rows and key is None and p.missing == 0 and \
                p.distinct == p.rows and "key" not in prop.source:
            prop.source["key"] = col  # unique: it names a row in the lake
        prop.choices.append(choice)
    if not prop.features:
        raise DataError(
            f"{display}: no column can be a feature for {target!r}: "
            + "; ".join(f"{c.column} ({c.why})" for c in prop.left_out[:5]))
    prop.split, prop.split_why = _split(prop, profiles, time_col, time_why, group)
    return prop


def _task(tp: ColumnProfile, forced: str | None, positive: Any
          ) -> tuple[str, Any, str]:
    """The task for a target column, its positive class, and why."""
    name = tp.name
    if tp.present == 0:
        raise DataError(f"target {name!r} has no values")
    if tp.distinct < 2:
        raise DataError(f"target {name!r} has a single value ({tp.top_value!r}): "
                        f"there is nothing to learn")
    counts = dict(tp.values)
    numeric = tp.type in ("int64", "float64")
    if forced == "regression" and not numeric:
        raise DataError(
            f"--task regression needs numbers, but {name!r} is {tp.type} "
            f"(values like {tp.top_value!r}); choose --task multiclass, or fix the "
            f"column so that its values are numbers")
    if forced == "binary" and tp.distinct != 2:
        raise DataError(f"--task binary needs two values, but {name!r} has "
                        f"{tp.distinct}")
    if forced is None:
        if tp.type == "bool" or tp.distinct == 2:
            forced = "binary"
        elif not numeric:
            if tp.distinct > MAX_CLASSES:
                raise DataError(
                    f"target {name!r} is text with {tp.distinct} distinct values: "
                    f"too many classes to learn, and not numbers for a regression; "
                    f"pick another target, or fix the column if it holds numbers")
            forced = "multiclass"
        elif tp.integral and tp.distinct <= MAX_INT_CLASSES:
            forced = "multiclass"
        else:
            forced = "regression"
    if positive is not None and forced != "binary":
        raise DataError(f"--positive applies to a binary target; {name!r} is "
                        f"{forced} ({tp.distinct} values)")
    shares = ", ".join(f"{v} {_pct(c / tp.present)}" for v, c in
                       sorted(counts.items(), key=lambda kv: -kv[1])[:4])
    if forced == "binary":
        pos, why_pos = _positive(counts, positive)
        return "binary", pos, (f"{name} has two values ({shares}); {why_pos}")
    if forced == "multiclass":
        more = "" if tp.distinct <= 4 else ", ..."
        hint = " (whole numbers: pass --task regression if they are amounts)" \
            if numeric else ""
        return "multiclass", None, (f"{name} has {tp.distinct} values ({shares}"
                                    f"{more}){hint}")
    return "regression", None, (f"{name} holds numbers with {tp.distinct} "
                                f"distinct values")


def _label_sets(values: list, *, forced: bool = False) -> tuple[str, str] | None:
    """Whether a text target holds sets of labels, and how they are joined:
    (separator, why), or None. JSON lists count whatever their share; labels
    joined by a separator when at least ``LABEL_SET_SHARE`` of the values hold
    several and the labels are fewer than the distinct values (else the
    separator is part of the values)."""
    from collections import Counter

    from ..trainingdata import parse_labels

    texts = [str(v).strip() for v in values if v is not None and str(v).strip()]
    if not texts:
        return None
    if all(t.startswith("[") and parse_labels(t) is not None for t in texts):
        sep, how = "|", "JSON lists"
    else:
        share = {sep: sum(sep in t for t in texts) / len(texts)
                 for sep in LABEL_SEPARATORS}
        sep = max(LABEL_SEPARATORS, key=lambda x: share[x])
        if not forced and share[sep] < LABEL_SET_SHARE:
            return None
        how = f"labels joined by {sep!r}"
    counts = Counter(lb for t in texts for lb in (parse_labels(t, sep) or []))
    if len(counts) < 2 or (len(counts) >= len(set(texts)) and not forced):
        return None
    per_row = sum(len(parse_labels(t, sep) or []) for t in texts) / len(texts)
    top = ", ".join(f"{lb} {_pct(n / len(texts))}" for lb, n in counts.most_common(4))
    return sep, (f"a set of labels per row ({how}): {len(counts)} labels, "
                 f"{per_row:.2f} a row on average ({top}"
                 f"{', ...' if len(counts) > 4 else ''})")


def _positive(counts: dict[Any, int], given: Any) -> tuple[Any, str]:
    values = list(counts)
    if given is not None:
        for v in values:
            if str(v).lower() == str(given).lower():
                return v, f"positive class {v!r} (--positive)"
        raise DataError(f"--positive {given!r} is not one of the target's values "
                        f"{values}")
    for word in POSITIVE_WORDS:
        for v in values:
            if str(v).lower() == word:
                return v, f"positive class {v!r}"
    rare = min(values, key=lambda v: (counts[v], str(v)))
    return rare, f"positive class {rare!r}, the rarer one (--positive to choose)"


def _metrics(task: str, tp: ColumnProfile) -> list[str]:
    if task == "binary":
        rare = min(c for _, c in tp.values) / tp.present
        return METRICS["binary_rare" if rare < 0.2 else "binary"]
    return METRICS[task]


def _choose(p: ColumnProfile, col: pa.Array, target: pa.Array, *,
            regression: bool, key: str | None) -> Choice:
    """The feature entry for one column, or why it is left out."""
    c = p.name
    if p.type == "struct":
        return Choice(c, "nested object: set `nested: flatten` on the source to "
                      "use its fields")
    if p.present == 0:
        return Choice(c, "every value is missing")
    if p.distinct <= 1:
        return Choice(c, f"constant: {p.top_value!r} in every row that has a value")
    if c == key:
        return Choice(c, "the row key (--key): it names rows, it cannot generalise")
    if copies_target(col, target):
        return Choice(c, "a copy of the target")
    agree = determined_by_target(col, target, regression=regression)
    if agree is not None:
        how = (f"rank correlation {agree:.3f} with the target" if regression else
               f"each class has its own value on {_pct(agree)} of rows")
        return Choice(c, f"near-deterministic function of the target ({how}): "
                      f"likely recorded with or after the outcome; add it back "
                      f"only if it is known when predicting")
    why_id = _row_id(p)
    if why_id:
        return Choice(c, why_id, names_rows=True)
    miss = ""
    if p.missing:
        miss = f", {_pct(p.missing_share)} missing"
    if p.numeric:
        note = f"{p.type}{miss}" + (": a 0/1 missing indicator is added" if
                                    p.missing else "")
        tail = _long_tail(col) if p.type != "bool" else None
        if tail:
            return Choice(c, f"{note}; {tail}: log1p", {"column": c,
                                                         "scale": "log1p"})
        return Choice(c, note, {"column": c})
    if p.type == "timestamp":
        parts = _time_parts(p)
        if not parts:
            return Choice(c, f"timestamp spanning {p.span_days:.0f} days with no "
                          f"time of day: no calendar part that generalises")
        return Choice(c, f"timestamp over {p.span_days:.0f} days{miss}: calendar "
                      f"parts, not the date itself (it would not generalise to "
                      f"later dates)", {"column": c, "encode": parts})
    if p.mean_tokens >= FREE_TEXT_TOKENS:
        buckets = 4096 if p.rows < 20_000 else 16384 if p.rows < 500_000 else 65536
        return Choice(c, f"free text ({p.mean_tokens:.0f} words on average{miss}): "
                      f"hashed word n-grams",
                      {"column": c, "encode": "hashed_ngrams", "buckets": buckets})
    if p.distinct <= ONEHOT_MAX:
        return Choice(c, f"text with {p.distinct} values{miss}: one column each",
                      {"column": c, "encode": "onehot",
                       "max_categories": max(p.distinct, 2)})
    buckets = 1 << max(6, min(16, (2 * p.distinct - 1).bit_length()))
    return Choice(c, f"code with {p.distinct} values{miss}: hashed into {buckets} "
                  f"buckets", {"column": c, "encode": "hashing", "buckets": buckets})


TAIL_RATIO = 100.0
"""Non-negative numbers whose 99th percentile is this many times their median
span orders of magnitude (counts, amounts): their logarithm is the scale on
which differences mean the same everywhere."""


def _long_tail(col: pa.Array) -> str | None:
    """Why a numeric column is better read on a log scale, or None."""
    import numpy as np
    import pyarrow.compute as pc

    x = np.asarray(pc.cast(col, pa.float64()).drop_null().to_numpy(
        zero_copy_only=False), dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 20 or x.min() < 0:
        return None
    med, p99 = np.quantile(x, [0.5, 0.99])
    base = med if med > 0 else (x[x > 0].min() if (x > 0).any() else 0.0)
    if base <= 0 or p99 / base < TAIL_RATIO:
        return None
    return (f"non-negative with a long tail (median {med:.4g}, 99th percentile "
            f"{p99:.4g})")


def _row_id(p: ColumnProfile) -> str | None:
    """Why the column identifies rows (and so cannot generalise), or None.

    A measurement with many distinct values is not an id: only text codes, and
    whole numbers that count rows or are named like an id, are.
    """
    named = bool(set(name_words(p.name)) & ID_WORDS) or p.name.strip() == ""
    unique = p.distinct / max(p.present, 1)
    if p.type == "string" and p.mean_tokens < 2 and p.present >= 20 and (
            unique == 1.0 or (named and unique >= 0.95)):
        return f"a row identifier: {p.distinct} different values in {p.present} rows"
    if p.type == "int64" and p.counter:
        return f"a row counter: {p.distinct} consecutive whole numbers, one per row"
    if p.type == "int64" and named and unique >= 0.95 and p.present >= 20:
        return f"a row identifier: {p.distinct} different values in {p.present} rows"
    return None


def _time_parts(p: ColumnProfile) -> list[str]:
    """Calendar parts that recur within the data: the hour when times of day
    vary, the weekday over two weeks of daily (not monthly) dates, the month
    over two years."""
    parts = []
    if p.time_of_day:
        parts.append("hour")
    if p.span_days >= 14 and p.weekdays >= 2 and p.days_of_month > 1:
        parts.append("weekday")
    if p.span_days >= 730 and p.months >= 2:
        parts.append("month")
    return parts


def _entity(profiles: dict[str, ColumnProfile], exclude: set) -> str | None:
    """A column naming an entity with several rows each (a user, a patient)."""
    found = []
    for c, p in profiles.items():
        if c in exclude or p.type not in ("string", "int64") or p.present == 0:
            continue
        repeats = p.present / max(p.distinct, 1)
        if names_entity(c) and p.distinct >= 3 and repeats >= 1.5 and p.mean_tokens < 2:
            found.append((p.distinct, c))
    return max(found)[1] if found else None


def _time_column(profiles: dict[str, ColumnProfile], given: str | None,
                 exclude: set) -> tuple[str | None, str]:
    if given is not None:
        p = profiles[given]
        if p.type not in ("timestamp", "int64", "float64"):
            raise DataError(
                f"--time {given!r}: a time split needs timestamps or numbers, but "
                f"its values are {p.type} (e.g. {p.top_value!r}); write them as "
                f"ISO 8601 (2024-01-31T12:00:00) or pick another column")
        return given, f"--time {given}"
    stamps = [p for c, p in profiles.items() if p.type == "timestamp"
              and c not in exclude and p.distinct >= MIN_TIME_VALUES
              and "birth" not in name_words(c)]
    if not stamps:
        return None, ""
    named = [p for p in stamps if set(name_words(p.name)) & TIME_TOKENS]
    pick = max(named or stamps, key=lambda p: p.distinct)
    return pick.name, f"{pick.name} is a timestamp"


def _split(prop: Proposal, profiles: dict[str, ColumnProfile], time: str | None,
           time_why: str, group: str | None) -> tuple[dict[str, Any], str]:
    if time is not None:
        why = (f"{time_why}: train on the past, test on the future, as the model "
               f"will be used")
        if group is not None:
            prop.allow_shared.append(group)
            why += f"; {group} recurs over time"
        if profiles[time].missing:
            prop.required.append(time)
        return {"strategy": "time", "time": time, "test": 0.2, "valid": 0.1}, why
    if group is not None:
        p = profiles[group]
        if p.missing:
            prop.required.append(group)
        return ({"strategy": "group", "group": group, "test": 0.2, "valid": 0.1},
                f"{group} has {p.distinct} values with {p.present / p.distinct:.1f} "
                f"rows each: a {group} stays in one split")
    if prop.task in ("regression", "multilabel"):
        return {"strategy": "random", "test": 0.2, "valid": 0.1}, \
            "no time or group column: rows drawn at random"
    return {"strategy": "stratified", "test": 0.2, "valid": 0.1}, \
        "no time or group column: each split keeps the class shares"
