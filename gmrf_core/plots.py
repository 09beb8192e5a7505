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
    import numpy as np

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
        # show the central 99.9 % (the density is computed far into the tails)
        steps = 0.5 * (density[1:] + density[:-1]) * np.diff(values)
        mass = np.concatenate([[0.0], np.cumsum(steps)])
        lo, hi = np.interp([5e-4, 1 - 5e-4], mass / mass[-1], values)
        ax.set_xlim(lo, hi)
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


# ---------------------------------------------------------------------------------------
# Fixed effects and latent maps (formula models: names, levels, graphs, meshes, lattices)
# ---------------------------------------------------------------------------------------
__all__ += ["plot_fixed_effects", "plot_latent_map", "plot_latent"]


def _fixed_summary(result, model):
    """(names, mean, low, high) of the fixed effects from a formula model or an INLA table."""
    import numpy as np

    if model is not None and getattr(model, "terms", None) is not None:
        from .formula import fixed_table

        frame = fixed_table(result, model)
    elif hasattr(result, "fixed"):
        frame = result.fixed
    else:
        from .errors import InputError

        raise InputError("plot_fixed_effects: pass model= (built by gm.formula) or an INLA result.")
    names = [str(name) for name in frame.index]
    return (
        names,
        np.asarray(frame["mean"], float),
        np.asarray(frame["q0.025"], float),
        np.asarray(frame["q0.975"], float),
    )


def plot_fixed_effects(result, model=None, path=None, ax=None, dpi=90):
    """Forest plot of the fixed effects: posterior mean and 95 % interval, one row each.

    Parameters
    ----------
    result : InlaResult, FitResult or LaplaceApproximation
    model : LatentGaussianModel, optional
        Built by :func:`gmrf_core.formula` (names from its terms); required for a FitResult.
    path : str, optional
        Where to write the figure.
    ax : matplotlib Axes, optional
        Draw into it instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import numpy as np

    plt = _pyplot()
    names, mean, low, high = _fixed_summary(result, model)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 0.8 + 0.45 * max(len(names), 1)))
    else:
        fig = ax.figure
    rows = np.arange(len(names))[::-1]  # first effect on top
    ax.errorbar(
        mean, rows, xerr=np.vstack([mean - low, high - mean]), fmt="o", color="C0", capsize=3
    )
    ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
    ax.set_yticks(rows)
    ax.set_yticklabels(names)
    ax.set_xlabel("posterior mean and 95 % interval")
    ax.set_title("fixed effects")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def plot_latent_map(
    values,
    *,
    geometry=None,
    mesh=None,
    shape=None,
    spacing=1.0,
    ax=None,
    title=None,
    cmap=None,
    **style,
):
    """Map of one value per area (polygons), per mesh node, or per lattice node.

    Exactly one of ``geometry`` (a GeoDataFrame or GeoSeries with one row per value, in
    the values' order), ``mesh`` (a :class:`gmrf_core.models.Mesh`: values at its
    nodes, linearly interpolated on the triangles) or ``shape`` (``(m, n)`` lattice of
    :class:`~gmrf_core.models.Matern2D`: node ``(i, j)`` is value ``i*n + j`` at
    ``(i*h0, j*h1)``) says where the values live. ``style`` goes to the drawing call
    (e.g. ``vmin``, ``vmax``).

    Returns
    -------
    matplotlib.axes.Axes
        With a colour bar.

    Raises
    ------
    InputError
        None or several of geometry/mesh/shape, or a number of values that does not match.
    """
    import numpy as np

    from .errors import InputError

    plt = _pyplot()
    values = np.asarray(values, dtype=float).reshape(-1)
    places = (("geometry", geometry), ("mesh", mesh), ("shape", shape))
    given = [name for name, where in places if where is not None]
    if len(given) != 1:
        raise InputError(
            f"plot_latent_map: give exactly one of geometry, mesh, shape; got {given}."
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 4.5))
    if geometry is not None:
        if len(geometry) != values.size:
            raise InputError(f"plot_latent_map: {values.size} values for {len(geometry)} polygons.")
        frame = geometry if hasattr(geometry, "assign") else geometry.to_frame("geometry")
        frame = frame.assign(_value=values)
        options = {"edgecolor": "0.4", "linewidth": 0.3, **style}
        frame.plot(column="_value", ax=ax, cmap=cmap, legend=True, **options)
        ax.set_axis_off()
    elif mesh is not None:
        points = np.asarray(mesh.points, float)
        if points.shape[0] != values.size:
            raise InputError(
                f"plot_latent_map: {values.size} values for a mesh of {points.shape[0]} nodes."
            )
        artist = ax.tripcolor(
            points[:, 0],
            points[:, 1],
            np.asarray(mesh.triangles),
            values,
            shading="gouraud",
            cmap=cmap,
            **style,
        )
        ax.set_aspect("equal")
        ax.figure.colorbar(artist, ax=ax)
    else:
        m, n = (int(s) for s in shape)
        if m * n != values.size:
            raise InputError(f"plot_latent_map: {values.size} values for a {m} × {n} lattice.")
        h0, h1 = (float(spacing), float(spacing)) if np.ndim(spacing) == 0 else map(float, spacing)
        artist = ax.imshow(
            values.reshape(m, n),
            origin="lower",
            extent=(-h1 / 2, (n - 0.5) * h1, -h0 / 2, (m - 0.5) * h0),
            cmap=cmap,
            **style,
        )
        ax.set_xlabel("axis 1")
        ax.set_ylabel("axis 0")
        ax.figure.colorbar(artist, ax=ax)
    if title:
        ax.set_title(title)
    return ax


def plot_latent(result, model, term, path=None, geometry=None, part=None, dpi=90):
    """Posterior mean and sd of one f() term of a formula model, side by side on its map.

    Where the term lives: its mesh (spde), lattice (matern2d) or, for areal terms
    (besag, bym2, iid on areas), the polygons ``geometry`` (a GeoDataFrame: rows are
    matched to the term's levels through the column of the term's name when the frame
    has it, else taken in the levels' order).

    Parameters
    ----------
    result : InlaResult, FitResult or LaplaceApproximation
    model : LatentGaussianModel
        Built by :func:`gmrf_core.formula`.
    term : str
    path : str, optional
    geometry : GeoDataFrame, optional
        Polygons for an areal term.
    part : str, optional
        As in :func:`gmrf_core.formula.latent_table` (BYM2: ``"u"``).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        An unknown term, a group (space–time) term, an areal term without geometry.
    """
    from .errors import InputError
    from .formula import latent_table

    plt = _pyplot()
    info = model.terms.term(term)
    table = latent_table(result, model, term, part=part)
    if "group" in info.info:
        raise InputError(
            f"plot_latent: term {term!r} is a space–time (group) term; map one group level "
            "at a time with plot_latent_map(table.xs(level)['mean'], ...)."
        )
    where = {}
    if "mesh" in info.info:
        where["mesh"] = info.info["mesh"]
    elif "shape" in info.info:
        where["shape"] = info.info["shape"]
        where["spacing"] = info.info["spacing"]
    elif geometry is not None:
        column = info.columns[0]
        if hasattr(geometry, "columns") and column in geometry.columns:
            order = {level: i for i, level in enumerate(geometry[column])}
            missing = [level for level in table.index if level not in order]
            if missing:
                raise InputError(
                    f"plot_latent: levels {missing[:5]} of term {term!r} have no polygon in "
                    f"geometry[{column!r}]."
                )
            geometry = geometry.iloc[[order[level] for level in table.index]]
        where["geometry"] = geometry
    else:
        raise InputError(
            f"plot_latent: term {term!r} ({info.model}) has no mesh or lattice; pass geometry= "
            "(a GeoDataFrame of its areas)."
        )
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2))
    plot_latent_map(table["mean"], ax=axes[0], title=f"{term}: posterior mean", **where)
    plot_latent_map(table["sd"], ax=axes[1], title=f"{term}: posterior sd", cmap="magma", **where)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
