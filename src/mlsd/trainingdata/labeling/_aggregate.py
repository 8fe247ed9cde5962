"""One label per item from several votes: majority vote, and Dawid-Skene.

Dawid and Skene (1979): each annotator (or labeling function) has a confusion
matrix, P(vote | true label), and the items' true labels are unknown; EM
alternates the items' posteriors given the matrices and priors (E) and the
matrices and priors given the posteriors (M), from the majority vote's
shares. A missing vote (an annotator who did not see the item, a function
that abstains) says nothing. Careful annotators then count for more than
careless ones, and an annotator who systematically swaps two labels is
undone instead of outvoted.

Written here: scikit-learn has no such model, crowd-kit (which has one)
brings pandas-heavy dependencies for a few dozen lines of EM, and snorkel
would pull in PyTorch; the same EM serves annotators and labeling functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._agreement import vote_counts


def majority_vote(M: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray,
                                                  np.ndarray]:
    """Each item's most voted label (ties: the first label in order), the
    share of its votes that label has, and whether it was a tie; items
    without a vote get -1 and confidence 0."""
    counts = vote_counts(M, k)
    total = counts.sum(axis=1)
    top = counts.max(axis=1)
    label = np.where(total > 0, counts.argmax(axis=1), -1)
    conf = np.where(total > 0, top / np.maximum(total, 1), 0.0)
    tie = (counts == top[:, None]).sum(axis=1) > 1
    return label, conf, tie & (total > 0)


@dataclass
class DawidSkene:
    """What EM found: each item's label posterior, each voter's confusion
    matrix (true label x vote) and accuracy, the label priors."""

    posterior: np.ndarray  # (items, k)
    confusion: np.ndarray  # (voters, k, k or k + 1): P(vote = column | truth = row)
    priors: np.ndarray     # (k,)
    iterations: int
    converged: bool
    abstain_as_vote: bool = False  # the last column of confusion: abstaining

    @property
    def labels(self) -> np.ndarray:
        return self.posterior.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.posterior.max(axis=1)

    def accuracy(self) -> np.ndarray:
        """Each voter's estimated accuracy when it votes: the diagonal of its
        confusion matrix weighed by the priors (and, when abstaining is an
        outcome, by how often it votes at all)."""
        k = len(self.priors)
        diag = np.diagonal(self.confusion[:, :, :k], axis1=1, axis2=2)
        voting = self.confusion[:, :, :k].sum(axis=2)
        return (diag @ self.priors) / np.maximum(voting @ self.priors, 1e-12)


def dawid_skene(M: np.ndarray, k: int, *, iterations: int = 100,
                tol: float = 1e-6, smoothing: float = 0.01,
                abstain_as_vote: bool = False,
                start: np.ndarray | None = None,
                known: np.ndarray | None = None) -> DawidSkene:
    """Dawid-Skene EM on the vote matrix ``M`` (items x voters, codes, -1: no
    vote). ``smoothing`` is added to every confusion count, so a voter seen
    on few items of a label is not certain about it.

    ``abstain_as_vote``: -1 is an outcome the voter chose, with its own
    probability per true label (a labeling function that fires on one class
    more than the other tells by abstaining too; one that can only vote one
    label says nothing otherwise). For annotators, who did not see the item,
    it is no vote (the default). ``start``: the first posteriors (items x
    k; the votes' shares by default). ``known``: items whose label is known
    (its code, -1 elsewhere) keep it: they anchor each voter's confusion
    (semi-supervised EM), which voters that can only say yes need (two of
    them cannot be told apart from their votes alone)."""
    n, m = M.shape
    width = k + 1 if abstain_as_vote else k
    voted = M >= 0
    onehot = np.zeros((n, m, width))
    rows, cols = np.nonzero(voted)
    onehot[rows, cols, M[rows, cols]] = 1.0
    if abstain_as_vote:
        rows, cols = np.nonzero(~voted)
        onehot[rows, cols, k] = 1.0
    counts = onehot[:, :, :k].sum(axis=1)
    total = counts.sum(axis=1, keepdims=True)
    post = np.where(total > 0, counts / np.maximum(total, 1), 1.0 / k)
    if start is not None:
        post = np.asarray(start, dtype=float)
    anchored = None
    if known is not None and (np.asarray(known) >= 0).any():
        anchored = np.flatnonzero(np.asarray(known) >= 0)
        fixed = np.eye(k)[np.asarray(known)[anchored]]
        post = post.copy()
        post[anchored] = fixed
    converged, it = False, 0
    for it in range(1, iterations + 1):  # noqa: B007 - the count is reported
        # M step: priors and each voter's confusion from the posteriors
        priors = (post.sum(axis=0) + smoothing) / (n + k * smoothing)
        conf = np.einsum("ik,ijl->jkl", post, onehot) + smoothing
        conf /= conf.sum(axis=2, keepdims=True)
        # E step: posteriors from the priors and every vote's likelihood
        log_post = np.log(priors)[None, :] + np.einsum(
            "ijl,jkl->ik", onehot, np.log(conf))
        log_post -= log_post.max(axis=1, keepdims=True)
        new = np.exp(log_post)
        new /= new.sum(axis=1, keepdims=True)
        if anchored is not None:
            new[anchored] = fixed
        change = float(np.abs(new - post).max())
        post = new
        if change < tol:
            converged = True
            break
    return DawidSkene(posterior=post, confusion=conf, priors=priors,
                      iterations=it, converged=converged,
                      abstain_as_vote=abstain_as_vote)
