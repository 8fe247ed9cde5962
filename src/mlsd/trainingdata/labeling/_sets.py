"""Label sets (the multilabel task): each label its own yes/no question.

A human (or natural, or model) source's label is a whole set: the labels it
holds are yes, every other known label no. A labeling function votes one
label: yes where it fires; elsewhere it abstains, on that label as on the
others (a rule that finds sports says nothing about politics). Aggregation,
agreement and the label model then run label by label on binary vote
matrices (0: no, 1: yes, -1: no vote) with the single-label code: majority,
Dawid-Skene (with abstaining an outcome for functions), Cohen's and Fleiss'
kappa, Krippendorff's alpha. On top, agreement on whole sets: the Jaccard
similarity of two annotators' sets, and Krippendorff's alpha with the Jaccard
distance between sets (Passonneau's use of alpha for set-valued annotation).

A set's confidence is its least sure label decision (the smallest posterior
of the chosen yes/no among the labels).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pyarrow as pa

from ._agreement import MAX_QUEUE, _round, cohen_kappa, fleiss_kappa, vote_counts


def set_of(text: str | None, *, partial: bool = False) -> list[str] | None:
    """The labels of a stored label: a JSON list, or (a labeling function's
    vote, ``partial``) one label."""
    from .._labelsets import parse_labels

    if text is None:
        return None
    if partial and not str(text).lstrip().startswith("["):
        return [str(text).strip()]
    return parse_labels(text)


def set_text(labels) -> str:
    """A label set as the store and the target keep it (a sorted JSON list)."""
    return json.dumps(sorted(str(x) for x in labels))


def binary_votes(table: pa.Table, *, partial: bool,
                 labels: list[str] | None = None
                 ) -> tuple[dict[str, np.ndarray], list[str], list[str], list[str]]:
    """Per label, the (items x sources) matrix of 1 (the source's set holds
    it), 0 (its set does not: whole sets only) and -1 (no vote; ``partial``:
    a function's vote is yes on its label only, abstaining on the rest); with
    the items, sources and labels."""
    items = sorted(set(table.column("item").to_pylist()))
    sources = sorted(set(table.column("source").to_pylist()))
    at_item = {v: i for i, v in enumerate(items)}
    at_source = {v: i for i, v in enumerate(sources)}
    sets = [set_of(v, partial=partial) for v in table.column("label").to_pylist()]
    if labels is None:
        labels = sorted({lb for s in sets if s for lb in s})
    at_label = {v: i for i, v in enumerate(labels)}
    V = np.full((len(labels), len(items), len(sources)), -1, dtype=np.int64)
    for it, src, s in zip(table.column("item").to_pylist(),
                          table.column("source").to_pylist(), sets, strict=True):
        if s is None:
            continue
        i, j = at_item[it], at_source[src]
        if not partial:
            V[:, i, j] = 0
        for lb in s:
            if lb in at_label:
                V[at_label[lb], i, j] = 1
    return {lb: V[c] for lb, c in at_label.items()}, items, sources, labels


def aggregate_sets(table: pa.Table, method: str, *, partial: bool,
                   gold: dict[str, list[str]] | None = None
                   ) -> tuple[dict[str, tuple[str, float]], dict[str, Any]]:
    """item -> (label set, confidence), label by label (``majority``: yes
    when more than half the votes say so; ``dawid_skene``: EM per label, with
    abstaining an outcome for labeling functions, ``partial``); and per label
    what the aggregation found (the voters' estimated accuracy).

    ``gold``: label sets known by item (the target column's): Dawid-Skene
    keeps them (semi-supervised EM). Labeling functions only ever say yes; two
    of them on one label cannot be told apart from their votes alone (which
    one defines the label?), the known rows say which."""
    from ._aggregate import dawid_skene

    by_label, items, sources, labels = binary_votes(table, partial=partial)
    n = len(items)
    gold = gold or {}
    yes = np.zeros((n, len(labels)), dtype=bool)
    sure = np.ones((n, len(labels)))
    covered = np.zeros(n, dtype=bool)
    for M in by_label.values():
        covered |= (M >= 0).any(axis=1)
    detail: dict[str, Any] = {}
    for c, lb in enumerate(labels):
        M = by_label[lb]
        voters = np.flatnonzero((M >= 0).any(axis=0))  # who says anything of it
        M = M[:, voters]
        known = np.array([-1 if it not in gold else int(lb in gold[it])
                          for it in items], dtype=np.int64)
        if method == "dawid_skene" and not len(voters):
            p_yes = np.zeros(n)
            detail[lb] = {"prior": None, "voters": {}}
        elif method == "dawid_skene":
            if partial:  # the rows no function of this label fires on start as no
                from ._functions import correlated_groups, merged_votes

                groups = correlated_groups(M)
                M = merged_votes(M, 2, groups)
                start = np.where((M == 1).any(axis=1), 1.0, 0.0)
                ds = dawid_skene(M[covered], 2, abstain_as_vote=True,
                                 start=np.column_stack([1 - start, start])[covered],
                                 known=known[covered])
                p_yes = np.zeros(n)
                p_yes[covered] = ds.posterior[:, 1]
                names = ["+".join(sources[voters[i]] for i in g) for g in groups]
            else:
                ds = dawid_skene(M, 2, known=known)
                p_yes = ds.posterior[:, 1]
                names = [sources[i] for i in voters]
            detail[lb] = {"prior": round(float(ds.priors[1]), 4), "voters": {
                s: round(float(a), 4) for s, a in zip(names, ds.accuracy(),
                                                      strict=True)}}
        if method != "dawid_skene":
            votes = (M >= 0).sum(axis=1)
            ones = (M == 1).sum(axis=1)
            if partial:  # a function's yes is the only vote it gives
                p_yes = (ones > 0).astype(float)
            else:
                p_yes = np.where(votes > 0, ones / np.maximum(votes, 1), 0.0)
        yes[:, c] = p_yes > 0.5
        sure[:, c] = np.where(p_yes > 0.5, p_yes, 1 - p_yes)
    out = {}
    for i, it in enumerate(items):
        if covered[i]:
            out[it] = (set_text(lb for c, lb in enumerate(labels) if yes[i, c]),
                       float(sure[i].min()) if labels else 1.0)
    return out, detail


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b| (two empty sets agree fully)."""
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def set_alpha(sets: list[list[frozenset | None]]) -> float | None:
    """Krippendorff's alpha over label sets (sources x items, None: no
    label) with the Jaccard distance between sets."""
    import krippendorff

    domain = sorted({s for row in sets for s in row if s is not None},
                    key=lambda s: sorted(s))
    if len(domain) < 2:
        return None
    at = {s: i for i, s in enumerate(domain)}
    D = np.array([[1 - jaccard(set(a), set(b)) for b in domain] for a in domain])
    data = np.array([[np.nan if s is None else at[s] for s in row] for row in sets],
                    dtype=float)
    if ((~np.isnan(data)).sum(axis=0) >= 2).sum() == 0:
        return None

    def distance(v1, v2, i1, i2, n_v, dtype=np.float64):  # krippendorff's metric API
        return D[i1, i2].astype(dtype)

    try:
        return float(krippendorff.alpha(reliability_data=data,
                                        value_domain=list(range(len(domain))),
                                        level_of_measurement=distance))
    except (ValueError, ZeroDivisionError):
        return None


def set_agreement(table: pa.Table) -> dict[str, Any]:
    """How far annotators agree on label sets: per label (kappas, alpha),
    on whole sets (exact agreement, Jaccard per pair and against the others'
    label-by-label majority, alpha with the Jaccard distance), and the items
    they disagree on most, as a re-label queue."""
    from ._agreement import krippendorff_alpha

    by_label, items, sources, labels = binary_votes(table, partial=False)
    n, m = len(items), len(sources)
    sets: list[list[frozenset | None]] = [[None] * n for _ in range(m)]
    for lb in labels:
        M = by_label[lb]
        for i, j in zip(*np.nonzero(M >= 0), strict=True):
            cur = sets[j][i] or frozenset()
            sets[j][i] = cur | {lb} if M[i, j] == 1 else cur
    rated = np.array([sum(sets[j][i] is not None for j in range(m))
                      for i in range(n)])
    multi = rated >= 2
    per_label = []
    for lb in labels:
        M = by_label[lb]
        counts = vote_counts(M, 2)
        per_label.append({"label": lb, "yes_votes": int((M == 1).sum()),
                          "fleiss_kappa": _round(fleiss_kappa(counts)),
                          "krippendorff_alpha": _round(krippendorff_alpha(M)),
                          "disagreements": int(np.sum(multi & (counts > 0).all(
                              axis=1)))})
    pairs = []
    for a in range(m):
        for b in range(a + 1, m):
            both = [i for i in range(n) if sets[a][i] is not None
                    and sets[b][i] is not None]
            if not both:
                continue
            kappas = [cohen_kappa(by_label[lb][:, a], by_label[lb][:, b], k=2)
                      for lb in labels]
            kappas = [k for k in kappas if k is not None and np.isfinite(k)]
            pairs.append({"a": sources[a], "b": sources[b], "items": len(both),
                          "agreement": _round(float(np.mean(
                              [sets[a][i] == sets[b][i] for i in both]))),
                          "jaccard": _round(float(np.mean(
                              [jaccard(sets[a][i], sets[b][i]) for i in both]))),
                          "kappa": _round(float(np.mean(kappas)) if kappas
                                          else None)})
    per = []
    for a in range(m):
        sims = []
        for i in range(n):
            if sets[a][i] is None:
                continue
            others = [sets[b][i] for b in range(m) if b != a and sets[b][i] is not None]
            if not others:
                continue
            consensus = {lb for lb in labels
                         if sum(lb in s for s in others) * 2 > len(others)}
            sims.append(jaccard(sets[a][i], consensus))
        per.append({"annotator": sources[a],
                    "items": sum(s is not None for s in sets[a]),
                    "compared": len(sims),
                    "jaccard_with_others": _round(float(np.mean(sims)) if sims
                                                  else None)})
    # the queue: items whose label-by-label votes are split the most
    split = np.zeros(n)
    for lb in labels:
        M = by_label[lb]
        yes = (M == 1).sum(axis=1)
        votes = (M >= 0).sum(axis=1)
        p = np.where(votes > 0, yes / np.maximum(votes, 1), 0.0)
        split += np.where((p > 0) & (p < 1), -(p * np.log2(np.where(p > 0, p, 1))
                                               + (1 - p) * np.log2(np.where(
                                                   p < 1, 1 - p, 1))), 0.0)
    disputed = np.flatnonzero(multi & (split > 0))
    order = disputed[np.argsort(-split[disputed], kind="stable")][:MAX_QUEUE]
    queue = [{"item": items[i],
              "sets": {sources[j]: sorted(sets[j][i]) for j in range(m)
                       if sets[j][i] is not None},
              "entropy": round(float(split[i]), 4)} for i in order]
    return {
        "items": n, "annotators": m, "labels": labels, "multilabel": True,
        "items_with_several_votes": int(multi.sum()),
        "votes": int(rated.sum()),
        "raw_agreement": _round(float(np.mean([
            len({sets[j][i] for j in range(m) if sets[j][i] is not None}) == 1
            for i in np.flatnonzero(multi)])) if multi.any() else None),
        "fleiss_kappa": _round(float(np.mean(
            [p["fleiss_kappa"] for p in per_label
             if p["fleiss_kappa"] is not None]))
            if any(p["fleiss_kappa"] is not None for p in per_label) else None),
        "krippendorff_alpha": _round(set_alpha(sets)),
        "per_label": per_label, "pairs": pairs, "per_annotator": per,
        "disagreements": int(len(disputed)), "queue": queue}


def _micro_f1(pred: list[set], gold: list[set]) -> float | None:
    tp = sum(len(p & g) for p, g in zip(pred, gold, strict=True))
    fp = sum(len(p - g) for p, g in zip(pred, gold, strict=True))
    fn = sum(len(g - p) for p, g in zip(pred, gold, strict=True))
    return None if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def function_report_sets(votes: dict[str, list[str | None]], keys: list,
                         gold: list[list[str] | None]) -> dict[str, Any]:
    """The labeling functions of a multilabel task: per function its votes,
    coverage, overlap (another function fires on the row too) and, on the
    rows whose label set is known (``gold``), precision (its label is in the
    set: the accuracy of a yes-only voter); and, there, the label model's
    sets against the union of the functions' votes (micro F1, exact sets),
    the label model anchored on half the known sets and measured on the
    other half, both ways."""
    n = len(keys)
    fired = {name: np.array([v is not None for v in vs]) for name, vs in votes.items()}
    any_count = sum(fired.values()) if fired else np.zeros(n)
    per = []
    for name, vs in votes.items():
        mine = fired[name]
        row: dict[str, Any] = {
            "function": name, "votes": int(mine.sum()),
            "coverage": round(float(mine.mean()), 4) if n else 0.0,
            "overlap": round(float(np.mean(any_count[mine] > 1)), 4)
            if mine.any() else 0.0, "conflict": None,
            "labels": sorted({v for v in vs if v is not None})}
        dev = [i for i in range(n) if mine[i] and gold[i] is not None]
        row["dev_rows"] = len(dev)
        row["accuracy"] = (round(float(np.mean([vs[i] in gold[i] for i in dev])), 4)
                           if dev else None)
        per.append(row)
    table = pa.table({
        "item": [str(keys[i]) for vs in votes.values() for i, v in enumerate(vs)
                 if v is not None and keys[i] is not None],
        "source": [name for name, vs in votes.items() for i, v in enumerate(vs)
                   if v is not None and keys[i] is not None],
        "label": [v for vs in votes.values() for i, v in enumerate(vs)
                  if v is not None and keys[i] is not None]})
    out: dict[str, Any] = {"rows": n, "functions": per, "multilabel": True,
                           "covered": round(float(np.mean(any_count > 0)), 4)
                           if n else 0.0}
    if table.num_rows == 0:
        return out
    at = {str(k): g for k, g in zip(keys, gold, strict=True)
          if k is not None and g is not None}
    _, detail = aggregate_sets(table, "dawid_skene", partial=True, gold=at)
    union, _ = aggregate_sets(table, "majority", partial=True)
    out["estimated_accuracy"] = {f"{lb}: {v}": a for lb, d in detail.items()
                                 for v, a in d["voters"].items()}
    # the label model is measured on known sets it was not anchored on: two
    # folds of the known items, each scored by the EM anchored on the other
    dev = [it for it in union if it in at]
    fold = {it: hashlib.blake2b(it.encode(), digest_size=1).digest()[0] % 2
            for it in dev}
    held: dict[str, tuple[str, float]] = {}
    for f in (0, 1):
        found, _ = aggregate_sets(table, "dawid_skene", partial=True, gold={
            it: g for it, g in at.items() if fold.get(it, 1 - f) != f})
        held.update({it: found[it] for it in dev if fold[it] == f})
    if dev:
        g = [set(at[it]) for it in dev]
        m = [set(json.loads(held[it][0])) for it in dev]
        u = [set(json.loads(union[it][0])) for it in dev]
        out["dev_rows"] = len(dev)
        out["label_model_micro_f1"] = _round(_micro_f1(m, g))
        out["union_micro_f1"] = _round(_micro_f1(u, g))
        out["label_model_exact"] = round(float(np.mean([a == b for a, b in zip(
            m, g, strict=True)])), 4)
        out["union_exact"] = round(float(np.mean([a == b for a, b in zip(
            u, g, strict=True)])), 4)
    return out
