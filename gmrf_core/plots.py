"""Figures of fitted models (matplotlib; the Agg backend is used when none is set).

:func:`plot_hyperparameters` draws the posterior marginals of the hyperparameters of an
:class:`~gmrf_core.inference.InlaResult` on their natural scale, with the posterior mean
and the 95 % interval marked.
"""

import math

__all__ = ["plot_hyperparameters"]


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "png"):
        try:
            matplotlib.use("Agg")
        except Exception:  # noqa: BLE001 - an interactive backend already in use stays
            pass
    import matplotlib.pyplot as plt

    return plt


def plot_hyperparameters(result, path=None, columns=None, dpi=90):
    """Posterior marginals of every hyperparameter, one panel each, natural scale.

    Parameters
    ----------
    result : InlaResult
    path : str, optional
        Where to write the figure (PNG by extension); the figure is returned either way.
    columns : int, optional
        Panels per row (default min(dim θ, 3)).
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    names = list(result.natural_names)
    d = len(names)
    columns = min(d, 3) if columns is None else int(columns)
    rows = math.ceil(d / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    summary = result.hyperparameters
    for k, name in enumerate(names):
        ax = axes[k // columns][k % columns]
        values, density = result.hyperparameter_marginal(name)
        ax.plot(values, density, color="C0")
        row = summary.loc[name] if hasattr(summary, "loc") else summary[k]
        low, high = float(row["q0.025"]), float(row["q0.975"])
        inside = (values >= low) & (values <= high)
        ax.fill_between(values[inside], density[inside], color="C0", alpha=0.25)
        ax.axvline(float(row["mean"]), color="C3", lw=1, label="mean")
        ax.set_title(name)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("value")
        if k == 0:
            ax.set_ylabel("posterior density")
            ax.legend(frameon=False, fontsize=8)
    for k in range(d, rows * columns):
        axes[k // columns][k % columns].set_axis_off()
    fig.suptitle(f"hyperparameter marginals ({result.integration}, {len(result.weights)} points)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
