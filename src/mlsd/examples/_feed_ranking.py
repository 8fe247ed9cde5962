"""The feed-ranking example: the course's feed ranked by two objectives.

Posts shown in a feed, each with the quality readers gave it (``rating``, 1 to
5) and whether the reader clicked (``clicked``). The two pull apart, as in the
course: sensational titles and memes get clicks and poor ratings, long
how-tos get good ratings and fewer clicks. A seeded generator writes the
impressions, a spec with ``problem.objectives``, and unlabelled new posts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CATEGORIES = {  # quality, engagement (latent effects)
    "howto": (0.8, -0.4), "news": (0.3, 0.1), "opinion": (0.0, 0.2),
    "meme": (-0.7, 0.9), "promo": (-0.9, 0.3)}
BAIT = ["shocking", "you won't believe", "secret", "insane", "this one trick",
        "goes viral", "top 10", "must see"]
PLAIN = ["guide", "how to", "analysis", "explained", "notes on", "a study of",
         "tutorial", "review", "report", "deep dive"]
DETAIL = ["for beginners", "in 2025", "at scale", "on a budget", "the hard way",
          "in ten minutes", "for teams", "at home", "revisited", "from scratch",
          "without tears", "in practice", "for experts", "this week", "in depth"]
TOPICS = ["python", "gardening", "markets", "cooking", "football", "elections",
          "climate", "databases", "travel", "music", "vaccines", "housing"]
COLUMNS = ["item_id", "shown_at", "category", "title", "words", "has_image",
           "author_followers", "author_avg_rating", "rating", "clicked"]
SCHEMA = {"item_id": "string", "shown_at": "timestamp", "category": "string",
          "title": "string", "words": "int64", "has_image": "bool",
          "author_followers": "int64", "author_avg_rating": "float64",
          "rating": "float64", "clicked": "bool"}


def generate_items(n: int, seed: int) -> list[dict]:
    """``n`` impressions with both labels, in time order."""
    rng = np.random.default_rng(seed)
    cats = list(CATEGORIES)
    n_authors = max(20, n // 40)
    author_q = rng.normal(0, 0.6, n_authors)
    followers = np.exp(rng.normal(6, 1.5, n_authors)).astype(int)
    start = np.datetime64("2025-01-01T00:00:00")
    seconds = np.sort(rng.integers(0, 180 * 86400, n))
    rows = []
    for i in range(n):
        a = int(rng.integers(n_authors))
        cat = cats[int(rng.choice(len(cats), p=[0.25, 0.25, 0.2, 0.2, 0.1]))]
        q_cat, e_cat = CATEGORIES[cat]
        bait = rng.random() < (0.6 if cat in ("meme", "promo") else 0.15)
        words = int(np.clip(rng.lognormal(5.5 if cat == "howto" else 4.5, 0.6),
                            10, 5000))
        image = bool(rng.random() < (0.8 if cat == "meme" else 0.35))
        topic = TOPICS[int(rng.integers(len(TOPICS)))]
        head = BAIT[int(rng.integers(len(BAIT)))] if bait else PLAIN[
            int(rng.integers(len(PLAIN)))]
        detail = DETAIL[int(rng.integers(len(DETAIL)))]
        title = (f"{head} {topic} {detail}" if rng.random() < 0.5
                 else f"{topic}: {head} {detail}")
        if rng.random() < 0.5:
            title += f" ({int(rng.integers(2, 60))})"
        shown = start + np.timedelta64(int(seconds[i]), "s")
        hour = int(seconds[i] // 3600 % 24)
        quality = (q_cat + author_q[a] + 0.35 * np.log10(words / 100)
                   - (0.6 if bait else 0.0) + rng.normal(0, 0.45))
        engage = (-1.6 + e_cat + (1.1 if bait else 0.0) + (0.4 if image else 0.0)
                  + 0.12 * np.log1p(followers[a]) - 0.1 * quality
                  + (0.3 if 18 <= hour <= 22 else 0.0) + rng.normal(0, 0.3))
        rows.append({
            "item_id": f"i{i + 1:06d}", "shown_at": str(shown) + "Z",
            "category": cat, "title": title, "words": words, "has_image": image,
            "author_followers": int(followers[a]),
            # the author's average rating before (noisy, known at serving time)
            "author_avg_rating": round(float(np.clip(
                3.2 + author_q[a] + rng.normal(0, 0.2), 1, 5)), 2),
            "rating": round(float(np.clip(3.2 + quality, 1, 5)), 1),
            "clicked": bool(rng.random() < 1 / (1 + np.exp(-engage)))})
    return rows


def _csv(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return f'"{text}"' if any(c in text for c in ',"\n') else text


def write_example(folder: Path, *, n_items: int = 8000, seed: int = 7) -> dict:
    """Write the project into ``folder``; return its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    rows = generate_items(n_items + 300, seed)
    shown, fresh = rows[:n_items], rows[n_items:]
    lines = [",".join(COLUMNS)] + [",".join(_csv(r[c]) for c in COLUMNS)
                                   for r in shown]
    (folder / "data" / "impressions.csv").write_text("\n".join(lines) + "\n",
                                                      encoding="utf-8")
    new_cols = [c for c in COLUMNS if c not in ("rating", "clicked")]
    lines = [",".join(new_cols)] + [",".join(_csv(r[c]) for c in new_cols)
                                    for r in fresh]
    (folder / "data" / "new_items.csv").write_text("\n".join(lines) + "\n",
                                                    encoding="utf-8")
    (folder / "schemas").mkdir(exist_ok=True)
    doc = ["# Declared schema of source 'impressions' (shipped with the example).",
           "source: impressions", "columns:"] + [f"  {c}: {t}"
                                                  for c, t in SCHEMA.items()]
    (folder / "schemas" / "impressions.yaml").write_text("\n".join(doc) + "\n",
                                                         encoding="utf-8")
    (folder / "mlsd.yaml").write_text(SPEC, encoding="utf-8")
    manifest = {"seed": seed, "items": n_items, "new_items": len(fresh),
                "clicked_share": round(float(np.mean([r["clicked"] for r in shown])),
                                       4),
                "mean_rating": round(float(np.mean([r["rating"] for r in shown])), 3)}
    manifest["summary"] = (f"{n_items} impressions rated and clicked "
                           f"({manifest['clicked_share']:.0%} clicked, mean rating "
                           f"{manifest['mean_rating']}), {len(fresh)} new posts to "
                           f"rank")
    (folder / "data" / "manifest.json").write_text(json.dumps(manifest, indent=1),
                                                   encoding="utf-8")
    return manifest


SPEC = """\
# mlsd project: a feed ranked by two objectives (the course's framing chapter).
# The quality of a post (its rating) and the probability of engagement (a click)
# pull apart: bait titles get clicks and poor ratings. One model per objective,
# combined at serving time as sum(weight * standardised output): change the
# weights per request (?weights=quality:0.5,engagement:0.5), no retraining.
name: feed-ranking
seed: 42
problem:
  objectives:
    quality: {target: rating, task: regression, weight: 0.7}
    engagement: {target: clicked, task: binary, weight: 0.3, positive: true}
  combine: decoupled           # or joint: one model of the weighted losses
sources:
  impressions: {path: data/impressions.csv, key: item_id}
validate:
  required: [item_id, shown_at, category, title, rating, clicked]
  ranges:
    rating: [1, 5]
    words: [0, null]
    author_followers: [0, null]
split:
  strategy: time               # train on older impressions, test on newer ones
  time: shown_at
  test: 0.2
  valid: 0.1
features:
  - {column: category, encode: onehot}
  - {column: title, encode: hashed_ngrams, buckets: 512}
  - {column: words}
  - {column: has_image}
  - {column: author_followers}
  - {column: author_avg_rating}
  - {column: shown_at, encode: [hour, weekday]}
model:
  kind: lightgbm
  params: {n_estimators: 200, learning_rate: 0.05, num_leaves: 31}
"""
