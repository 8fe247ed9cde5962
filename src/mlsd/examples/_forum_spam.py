"""The course's example: spam detection on a forum, as raw files.

A seeded, deterministic generator of posts with text, reactions, posting time and
the author's features as of posting time, labelled ``is_spam`` (about 5%). Older
posts come as a CSV export, newer ones as a JSONL event log. It plants what real
data has: values missing more often for spam (missing not at random), several posts
per author, a rising spam rate, spam words, texts with commas, quotes and line
breaks, and a few malformed rows whose place and kind it writes to
``data/defects.json`` so tests can compare them with the quarantine.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

COLUMNS = [
    "post_id", "author_id", "created_at", "text", "likes", "dislikes", "views",
    "author_account_age_days", "author_country", "author_posts_before", "is_spam",
]
SCHEMA = {
    "post_id": "string", "author_id": "string", "created_at": "timestamp",
    "text": "string", "likes": "int64", "dislikes": "int64", "views": "int64",
    "author_account_age_days": "int64", "author_country": "string",
    "author_posts_before": "int64", "is_spam": "bool",
}
INT_COLUMNS = ["likes", "dislikes", "views", "author_account_age_days"]
REQUIRED = ["post_id", "author_id", "created_at", "text", "is_spam"]

HAM_WORDS = (
    "thanks question answer python error install version code help works issue "
    "library update docs example data model training dataset feature test build "
    "release bug fix linux windows memory speed guide tutorial idea project team "
    "forum post reply agree great interesting learned tried problem solution "
    "config server deploy latency batch stream pipeline schema table query index"
).split()
SPAM_WORDS = (
    "free crypto bitcoin winner prize click offer cheap discount casino loans "
    "guaranteed bonus investment profit limited deal pills followers"
).split()
FILLERS = "the a to and of in is for on with this that it my you i we".split()
COUNTRIES = ["FR", "US", "DE", "GB", "ES", "IT", "BR", "IN", "CA", "JP", "NL",
             "BE", "CH", "PL", "SE", "MX", "AR", "NG", "VN", "ID", "PH", "RU",
             "TR", "KR", "AU"]
HAM_COUNTRY_P = np.array([20, 22, 10, 9, 6, 6, 5, 6, 4, 3, 2, 2, 2, 1.5, 1.5, 1,
                          1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
SPAM_COUNTRY_P = np.array([2, 10, 2, 3, 1, 1, 8, 12, 1, 1, 1, 1, 1, 1, 1, 4, 3,
                           12, 10, 10, 9, 8, 5, 2, 1])
START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 366


def _text(rng: np.random.Generator, spam: bool) -> str:
    n = int(rng.integers(6, 28))
    words = []
    for _ in range(n):
        r = rng.random()
        if spam and r < 0.12:
            words.append(SPAM_WORDS[rng.integers(len(SPAM_WORDS))])
        elif not spam and r < 0.03:
            words.append(SPAM_WORDS[rng.integers(len(SPAM_WORDS))])
        elif r < 0.7:
            words.append(HAM_WORDS[rng.integers(len(HAM_WORDS))])
        else:
            words.append(FILLERS[rng.integers(len(FILLERS))])
    text = " ".join(words)
    if spam and rng.random() < 0.25:
        text += f" http://deal{int(rng.integers(100))}.example/offer"
    r = rng.random()
    if r < 0.03:
        text = text.replace(" ", ", ", 1)
    elif r < 0.05:
        text = f'He said "{text}"'
    elif r < 0.07:
        text = text.replace(" ", "\n", 1)  # a line break inside the field
    elif r < 0.08:
        text += " merci, très intéressant 👍"
    return text.capitalize()


def generate_posts(n_posts: int = 20_000, seed: int = 42) -> list[dict]:
    """The clean posts, oldest first, with labels (no defects yet)."""
    rng = np.random.default_rng(seed)
    n_authors = max(50, n_posts // 8)
    n_spammers = max(5, n_authors // 15)
    signup = rng.integers(-5 * 365, DAYS, size=n_authors)  # days from START
    # spammer accounts are young: they sign up shortly before posting
    signup[:n_spammers] = rng.integers(-60, DAYS - 5, size=n_spammers)
    zipf = 1.0 / np.arange(1, n_authors + 1) ** 0.8
    ham_authors = np.arange(n_spammers, n_authors)
    ham_w = zipf[: len(ham_authors)] / zipf[: len(ham_authors)].sum()
    spam_country = rng.choice(len(COUNTRIES), size=n_authors,
                              p=SPAM_COUNTRY_P / SPAM_COUNTRY_P.sum())
    ham_country = rng.choice(len(COUNTRIES), size=n_authors,
                             p=HAM_COUNTRY_P / HAM_COUNTRY_P.sum())
    # volume grows over the year (a time trend), with a daily rhythm
    day = np.sort(rng.triangular(0, DAYS, DAYS, size=n_posts))
    ham_draws = rng.choice(ham_authors, size=n_posts, p=ham_w)
    posts, counts = [], np.zeros(n_authors, dtype=int)
    for i in range(n_posts):
        t = day[i] / DAYS
        from_spammer = rng.random() < 0.02 + 0.04 * t  # spam rises over time
        if from_spammer:
            author = int(rng.integers(n_spammers))
            spam = rng.random() < 0.8
        else:
            author = int(ham_draws[i])
            spam = rng.random() < 0.01
        d = max(float(day[i]), float(signup[author]) + 0.01)
        hour = int(rng.integers(0, 24)) if spam else int(
            np.clip(rng.normal(15, 4), 0, 23))
        created = START + timedelta(days=int(d), hours=hour,
                                    minutes=int(rng.integers(60)),
                                    seconds=int(rng.integers(60)))
        views = int(rng.lognormal(3.6 if spam else 4.0, 1.0))
        likes = int(rng.binomial(views, 0.03 if spam else 0.05))
        dislikes = int(rng.binomial(views, 0.025 if spam else 0.012))
        country = COUNTRIES[spam_country[author] if from_spammer
                            else ham_country[author]]
        # missing not at random: spam authors hide their country far more often
        if rng.random() < (0.45 if spam else 0.06):
            country = None
        posts.append({
            "author_id": f"u{author:06d}",
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "text": _text(rng, spam),
            "likes": likes,
            "dislikes": dislikes,
            "views": views,
            "author_account_age_days": int(d - signup[author]),
            "author_country": country,
            "author_posts_before": 0,
            "is_spam": bool(spam),
        })
    posts.sort(key=lambda p: p["created_at"])
    counts[:] = 0
    for i, post in enumerate(posts):  # ids and author history in time order
        post["post_id"] = f"p{i + 1:07d}"
        a = int(post["author_id"][1:])
        post["author_posts_before"] = int(counts[a])
        counts[a] += 1
    return [{c: p[c] for c in COLUMNS} for p in posts]


def _csv_line(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _csv_value(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _plant(rng: np.random.Generator, n: int, count: int, taken: set[int]
           ) -> list[int]:
    out = []
    while len(out) < count:
        i = int(rng.integers(n))
        if i not in taken:
            taken.add(i)
            out.append(i)
    return sorted(out)


def write_example(folder: Path, *, n_posts: int = 20_000, seed: int = 42,
                  new_posts: int = 200) -> dict:
    """Write the example project's raw data, schemas, spec and defect manifest."""
    folder = Path(folder)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    posts = generate_posts(n_posts + new_posts, seed)
    fresh = posts[n_posts:]
    posts = posts[:n_posts]
    cut = int(len(posts) * 0.7)
    export, log = posts[:cut], posts[cut:]
    rng = np.random.default_rng(seed + 1)
    defects: list[dict] = []

    # CSV export of the older posts
    kinds = {}
    taken: set[int] = set()
    per_kind = max(2, len(export) // 2500)
    for kind in ("bad_number", "missing_required", "out_of_range", "broken_line"):
        for i in _plant(rng, len(export), per_kind, taken):
            kinds[i] = kind
    lines, line_no = [_csv_line(COLUMNS)], 2
    for i, post in enumerate(export):
        values = [_csv_value(post[c]) for c in COLUMNS]
        kind, column = kinds.get(i), None
        if kind == "bad_number":
            column = INT_COLUMNS[int(rng.integers(len(INT_COLUMNS)))]
            values[COLUMNS.index(column)] = ["12a", "abc", "3.5.1", "1e", "--2"][
                int(rng.integers(5))]
        elif kind == "missing_required":
            column = REQUIRED[1 + int(rng.integers(len(REQUIRED) - 1))]
            values[COLUMNS.index(column)] = ""
        elif kind == "out_of_range":
            column = "views"
            values[COLUMNS.index(column)] = str(-int(rng.integers(1, 50)))
        text = _csv_line(values)
        if kind == "broken_line":
            text = _csv_line(values[:-3])  # a truncated export line
        if kind:
            defects.append({"file": "data/posts_export.csv", "line": line_no,
                            "kind": kind, "column": column})
        lines.append(text)
        line_no += text.count("\n")
    (folder / "data" / "posts_export.csv").write_text("".join(lines),
                                                      encoding="utf-8")

    # JSONL event log of the newer posts
    kinds, taken = {}, set()
    per_kind = max(2, len(log) // 2000)
    for kind in ("bad_number", "missing_required", "out_of_range", "broken_line"):
        for i in _plant(rng, len(log), per_kind, taken):
            kinds[i] = kind
    out = []
    for i, post in enumerate(log):
        rec = dict(post)
        kind, column = kinds.get(i), None
        if kind == "bad_number":
            column = INT_COLUMNS[int(rng.integers(len(INT_COLUMNS)))]
            rec[column] = ["many", "12a", "n.a.", "7 likes"][int(rng.integers(4))]
        elif kind == "missing_required":
            column = REQUIRED[1 + int(rng.integers(len(REQUIRED) - 1))]
            if rng.random() < 0.5:
                rec[column] = None
            else:
                del rec[column]
        elif kind == "out_of_range":
            column = "views"
            rec[column] = -int(rng.integers(1, 50))
        text = json.dumps(rec, ensure_ascii=False)
        if kind == "broken_line":
            text = text[: len(text) // 2]  # the writer died mid-record
        if kind:
            defects.append({"file": "data/posts_log.jsonl", "line": i + 1,
                            "kind": kind, "column": column})
        out.append(text + "\n")
    (folder / "data" / "posts_log.jsonl").write_text("".join(out), encoding="utf-8")

    # new, unlabelled posts for batch scoring
    new_cols = [c for c in COLUMNS if c != "is_spam"]
    rows = [_csv_line(new_cols)] + [
        _csv_line([_csv_value(p[c]) for c in new_cols]) for p in fresh]
    (folder / "data" / "new_posts.csv").write_text("".join(rows), encoding="utf-8")

    manifest = {"seed": seed, "posts": n_posts,
                "rows": {"data/posts_export.csv": len(export),
                         "data/posts_log.jsonl": len(log)},
                "defects": defects}
    (folder / "data" / "defects.json").write_text(json.dumps(manifest, indent=1),
                                                  encoding="utf-8")
    (folder / "schemas").mkdir(exist_ok=True)
    for source in ("posts_export", "posts_log"):
        doc = [f"# Declared schema of source '{source}' (shipped with the example).",
               f"source: {source}", "columns:"]
        doc += [f"  {c}: {t}" for c, t in SCHEMA.items()]
        (folder / "schemas" / f"{source}.yaml").write_text("\n".join(doc) + "\n",
                                                           encoding="utf-8")
    (folder / "mlsd.yaml").write_text(SPEC, encoding="utf-8")
    return manifest


SPEC = """\
# mlsd project: spam detection on a forum (the course's example).
# `mlsd spec schema` prints the JSON Schema of this file.
name: forum-spam
seed: 42
problem:
  task: binary
  target: is_spam
  positive: true
  metrics: [pr_auc, recall, f1]
  threshold: f1                # pick the decision threshold for F1 on validation
sources:
  posts_export:                # older posts, a CSV export
    path: data/posts_export.csv
    key: post_id
  posts_log:                   # newer posts, a JSONL event log
    path: data/posts_log.jsonl
    key: post_id
validate:                      # applies to every source; schemas/ holds the types
  required: [post_id, author_id, created_at, text, is_spam]
  ranges:
    likes: [0, null]
    dislikes: [0, null]
    views: [0, null]
    author_account_age_days: [0, null]
dataset:
  union: [posts_export, posts_log]
  key: post_id
split:
  strategy: time               # train on older posts, test on newer ones
  time: created_at
  test: 0.2
  valid: 0.1
features:                      # post_id is not a feature: it cannot generalise
  - {column: likes}
  - {column: dislikes}
  - {column: views}
  - {column: author_account_age_days}
  - {column: author_posts_before}
  - {column: author_country, encode: onehot, max_categories: 20}
  - {column: author_id, encode: hashing, buckets: 1024}
  - {column: text, encode: hashed_ngrams, buckets: 4096}
  - {column: created_at, encode: [hour, weekday]}
model:
  kind: lightgbm
  params: {n_estimators: 300, learning_rate: 0.05, num_leaves: 31}
  class_weight: balanced
audit:
  allow_shared: [author_id]    # authors post again: their id may span splits
"""
