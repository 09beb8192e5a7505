"""Dense references written for the tests, independent of the code under test."""

import numpy as np


def second_difference_hessian(f, theta, h):
    """Hessian of a scalar function by second differences of its values.

    ``H[i, j] = (f(θ + e_i + e_j) − f(θ + e_i − e_j) − f(θ − e_i + e_j) + f(θ − e_i − e_j))
    / (4 h²)`` with ``e_i = h · (unit vector i)``.
    """
    p = theta.size
    hess = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            ei, ej = np.eye(p)[i] * h, np.eye(p)[j] * h
            hess[i, j] = (
                f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej) + f(theta - ei - ej)
            ) / (4 * h * h)
    return hess


def poisson_mode(M, counts, P, tol):
    """Mode w and Hessian −∇² at the mode of Σ (y η − e^η) − ½ wᵀPw, η = M w, by dense Newton."""
    w = np.zeros(M.shape[1])
    for _ in range(100):
        eta = M @ w
        grad = M.T @ (counts - np.exp(eta)) - P @ w
        hess = P + M.T @ (np.exp(eta)[:, None] * M)
        step = np.linalg.solve(hess, grad)
        w = w + step
        if np.abs(step).max() < tol:
            break
    eta = M @ w
    return w, P + M.T @ (np.exp(eta)[:, None] * M)
