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

