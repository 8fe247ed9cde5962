"""The call-center example: the course's routing of customer requests.

Each request (its text, channel and the customer's tenure) goes to one
department: billing, technical, sales or cancellation. As in the course, few
requests carry a department (those the old routing system logged after an
agent moved them by hand); three annotators labelled a few hundred more, with
planted disagreement (one careful, one hurried, one who mixes billing and
cancellation up); keyword rules for weak supervision cover many of the rest,
one of them misleading and written twice. A seeded generator writes the
requests, the annotators' labels, and a spec whose ``labels.policy`` builds
the target from all three, so ``mlsd run`` exercises the label store, the
agreement report, Dawid-Skene, the label model, word vectors pretrained on
the unlabelled text (transfer learning) and a simulation of active learning.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

DEPARTMENTS = ("billing", "technical", "sales", "cancellation")
WORDS = {
    "billing": ["invoice", "charged", "refund", "payment", "bill", "overcharged",
                "receipt", "direct debit"],
    "technical": ["error", "crash", "login", "password", "slow", "broken",
                  "not working", "update"],
    "sales": ["upgrade", "price", "offer", "plan", "discount", "buy", "quote",
              "new line"],
    "cancellation": ["cancel", "terminate", "close my account", "leave",
                     "end my contract", "switch provider", "unsubscribe"],
}
FILLER = ["hello", "please", "thanks", "my account", "today", "again", "urgent",
          "since monday", "on my phone", "help", "asap", "the app", "the website"]
SHARE = {"billing": 0.3, "technical": 0.35, "sales": 0.15, "cancellation": 0.2}
ANNOTATORS = {"ana": 0.95, "ben": 0.82, "carl": 0.7}  # accuracy


def _text(rng: np.random.Generator, dept: str) -> str:
    own = WORDS[dept]
    words = [str(rng.choice(own)) for _ in range(rng.integers(0, 3))]
    if rng.random() < 0.25:  # a word of another department: ambiguity
        other = str(rng.choice([d for d in DEPARTMENTS if d != dept]))
        words.append(str(rng.choice(WORDS[other])))
    words += [str(rng.choice(FILLER)) for _ in range(rng.integers(2, 5))]
    rng.shuffle(words)
    return " ".join(words)


def write_example(folder: Path, *, n: int = 3000, hand: int = 450,
                  seed: int = 7) -> dict:
    """Write the project into ``folder``; return what was planted."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    depts = rng.choice(DEPARTMENTS, size=n, p=[SHARE[d] for d in DEPARTMENTS])
    routed = rng.random(n) < 0.12  # the old system logged these
    rows = []
    for i, d in enumerate(depts):
        tenure = int(rng.gamma(2.0, 14 if d != "sales" else 6))
        if d == "cancellation":
            tenure = int(tenure * 1.6)
        rows.append({"request_id": f"r{i:05d}",
                     "received_at": (start + timedelta(minutes=int(17 * i + rng.
                                                                    integers(0, 9)))
                                     ).isoformat().replace("+00:00", "Z"),
                     "channel": str(rng.choice(["phone", "email", "chat"],
                                               p=[0.4, 0.35, 0.25])),
                     "text": _text(rng, str(d)), "tenure_months": tenure,
                     "department": str(d) if routed[i] else ""})
    with open(folder / "data" / "requests.csv", "w", newline="",
              encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    # word vectors pretrained on every request's text, routed or not (what
    # `mlsd features pretrain --column text -o models/text.vec --dim 32` makes
    # from the stored rows): transfer learning from the unlabelled text
    from .._vectors import lsa_word_vectors, write_vectors

    words, E, _ = lsa_word_vectors([r["text"] for r in rows], dim=32, seed=seed)
    write_vectors(folder / "models" / "text.vec", words, E)
    # three annotators on the same unrouted requests, each seeing 80% of them
    pool = np.flatnonzero(~routed)
    chosen = rng.choice(pool, size=min(hand, len(pool)), replace=False)
    votes = []
    for i in chosen:
        truth = str(depts[i])
        for who, acc in ANNOTATORS.items():
            if rng.random() > 0.8:
                continue
            label = truth
            if rng.random() > acc:
                if who == "carl" and truth in ("billing", "cancellation"):
                    label = "cancellation" if truth == "billing" else "billing"
                else:
                    label = str(rng.choice([d for d in DEPARTMENTS if d != truth]))
            votes.append({"request_id": rows[i]["request_id"], "label": label,
                          "annotator": who})
    with open(folder / "labels" / "annotators.csv", "w", newline="",
              encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["request_id", "label", "annotator"])
        w.writeheader()
        w.writerows(votes)
    (folder / "mlsd.yaml").write_text(SPEC, encoding="utf-8")
    truth_file = {rows[i]["request_id"]: str(depts[i]) for i in range(n)}
    (folder / "data" / "truth.json").write_text(json.dumps(truth_file),
                                                encoding="utf-8")
    manifest = {"seed": seed, "requests": n, "routed": int(routed.sum()),
                "hand_labelled": len(chosen), "votes": len(votes),
                "annotators": ANNOTATORS,
                "summary": (f"{n} requests, {int(routed.sum())} routed by the old "
                            f"system, {len(chosen)} labelled by three annotators "
                            f"({len(votes)} votes), keyword rules for the rest")}
    (folder / "data" / "manifest.json").write_text(json.dumps(manifest, indent=1),
                                                   encoding="utf-8")
    return manifest


SPEC = """\
# mlsd project: route customer requests to a department (the course's call
# center). Few requests carry a department; three annotators labelled a few
# hundred more (they disagree: `mlsd label agreement`), and keyword rules vote
# on many of the rest. labels.policy builds the target from all three.
name: call-center
seed: 42
problem:
  task: multiclass
  target: department
  metrics: [macro_f1, balanced_accuracy]
sources:
  requests: {path: data/requests.csv, key: request_id}
split:
  strategy: random
  test: 0.2
  valid: 0.1
features:
  - {column: text, encode: tfidf, min_df: 3}
  # word vectors pretrained on all the requests' text, labelled or not (remake:
  # mlsd features pretrain --column text -o models/text.vec --dim 32); the
  # report's SHAP shares say what they add to the words themselves
  - {column: text, encode: embedding, vectors: models/text.vec}
  - {column: channel, encode: onehot}
  - {column: tenure_months}
model:
  kind: linear
labels:
  imports: [{path: labels/annotators.csv}]
  aggregate: dawid_skene
  functions:
    refund: {label: billing, column: text, keywords: [refund, invoice, overcharged]}
    charged: {label: billing, column: text, keywords: [charged, receipt]}
    crash: {label: technical, column: text, keywords: [crash, error, broken]}
    login: {label: technical, column: text, regex: 'login|password'}
    offer: {label: sales, column: text, keywords: [upgrade, offer, discount, quote]}
    cancel: {label: cancellation, column: text, keywords: [cancel, terminate, leave]}
    # a misleading rule, written twice: "payment" is billing far more often
    payment_sales: {label: sales, column: text, keywords: [payment]}
    payment_sales_again: {label: sales, column: text, regex: 'payment'}
  policy:
    - {from: column}                              # the old system's routing
    - {from: human, min_confidence: 0.6}          # the annotators, by Dawid-Skene
    - {from: function, min_confidence: 0.8}       # the rules' label model, when sure
  # active learning, replayed on the labelled rows: would labelling by
  # uncertainty have beaten labelling at random? (a plot in the report)
  simulate: {start: 40, batch: 40, rounds: 5}
"""
