"""Losses beyond the learners' own: the focal loss of a binary task.

Focal loss (Lin et al. 2017) scales each row's log loss by ``(1 - p_t)^gamma``,
where ``p_t`` is the probability the model gives the row's true class: rows it
already gets right weigh little, so the fit spends itself on the hard ones (often
the rare class). ``alpha``, when given, weighs the positive rows (``1 - alpha``
the negative ones). With ``gamma = 0`` and no ``alpha`` it is the log loss.

Written here because neither LightGBM nor scikit-learn ships it: LightGBM takes
it as a custom objective (gradient and hessian per row, in the raw score), the
linear model is fitted by L-BFGS on it (:func:`fit_focal_linear`), since
scikit-learn's logistic regression takes no custom loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

_EPS = 1e-12


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


def _alphas(y: np.ndarray, alpha: float | None) -> np.ndarray:
    if alpha is None:
        return np.ones(len(y))
    return np.where(y == 1, alpha, 1.0 - alpha)


def focal_loss(z: np.ndarray, y: np.ndarray, gamma: float,
               alpha: float | None = None) -> np.ndarray:
    """Each row's focal loss at raw score ``z`` (log-odds) and label ``y``."""
    p = np.clip(_sigmoid(z), _EPS, 1 - _EPS)
    loss = np.where(y == 1, -((1 - p) ** gamma) * np.log(p),
                    -(p ** gamma) * np.log(1 - p))
    return _alphas(y, alpha) * loss


def focal_grad(z: np.ndarray, y: np.ndarray, gamma: float,
               alpha: float | None = None) -> np.ndarray:
    """d loss / d z per row. For ``y = 1``: ``(1-p)^g (g p log p - (1-p))``;
    for ``y = 0``: ``p^g (p - g (1-p) log(1-p))`` (``p - y`` when ``g = 0``)."""
    p = np.clip(_sigmoid(z), _EPS, 1 - _EPS)
    g1 = (1 - p) ** gamma * (gamma * p * np.log(p) - (1 - p))
    g0 = p ** gamma * (p - gamma * (1 - p) * np.log(1 - p))
    return _alphas(y, alpha) * np.where(y == 1, g1, g0)


def focal_hess(z: np.ndarray, y: np.ndarray, gamma: float,
               alpha: float | None = None, step: float = 1e-4) -> np.ndarray:
    """d2 loss / d z2 per row, by a central difference of :func:`focal_grad`
    (the closed form is long and easy to get wrong), floored at a small
    positive value: the focal loss is not convex everywhere, and a Newton step
    needs a positive curvature."""
    h = (focal_grad(z + step, y, gamma, alpha)
         - focal_grad(z - step, y, gamma, alpha)) / (2 * step)
    return np.maximum(h, 1e-6)


def prior_score(y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The log-odds of the (weighted) positive share: where boosting starts."""
    p = float(np.average(y == 1, weights=weights))
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def fit_focal_linear(X: sp.csr_matrix | np.ndarray, y: np.ndarray, *, gamma: float,
                     alpha: float | None, C: float = 1.0,
                     sample_weight: np.ndarray | None = None, max_iter: int = 2000,
                     init: tuple[np.ndarray, float] | None = None
                     ) -> tuple[np.ndarray, float, int]:
    """Coefficients and intercept minimising ``C * sum(w * focal) + |coef|^2/2``
    (scikit-learn's scaling of the logistic loss, the intercept not
    penalised), by L-BFGS from ``init`` (zeros and the prior's log-odds by
    default). Returns (coef, intercept, iterations)."""
    from scipy.optimize import minimize

    y = np.asarray(y, dtype=int)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight,
                                                                 dtype=float)
    d = X.shape[1]
    if init is None:
        theta0 = np.concatenate([np.zeros(d), [prior_score(y, w)]])
    else:
        theta0 = np.concatenate([np.asarray(init[0], dtype=float).ravel(),
                                 [float(init[1])]])

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef, b = theta[:d], theta[d]
        z = np.asarray(X @ coef).ravel() + b
        loss = C * float(np.sum(w * focal_loss(z, y, gamma, alpha)))
        g = C * w * focal_grad(z, y, gamma, alpha)
        grad = np.concatenate([np.asarray(X.T @ g).ravel() + coef, [g.sum()]])
        return loss + 0.5 * float(coef @ coef), grad

    res = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter})
    return res.x[:d], float(res.x[d]), int(res.nit)
