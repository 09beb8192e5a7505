"""Disease mapping on real data: BYM2–Poisson for sudden infant deaths in North Carolina.

Data: the North Carolina SIDS data (Cressie 1993, *Statistics for Spatial Data*,
pp. 386–389): births (BIR74) and sudden infant deaths (SID74) in 1974–78 for the 100
counties, with their polygons. The shapefile ships inside the libpysal wheel
(``libpysal.examples.get_path("sids2.shp")``), so nothing is downloaded.

Model (Riebler et al. 2016; R-INLA's ``bym2``)::

    SID74_i ~ Poisson(E_i RR_i),   log RR_i = β0 + β1 nonwhite_i + b_i,
    b ~ BYM2 on the queen contiguity of the counties,

with expected counts E_i = BIR74_i × (Σ SID74 / Σ BIR74) (internal standardisation)
and nonwhite_i the proportion of non-white births (NWBIR74 / BIR74). The posterior
relative risk RR_i and its exceedance probability P(RR_i > 1) are computed from joint
posterior draws of (x, β) (``gm.inla``: θ integrated out; without it the Gaussian
approximation at θ̂ of ``gm.fit``) and mapped.

Run ``python examples/areal.py [--output sids_map.png] [--draws 4000]``.
"""

import argparse
import sys

import numpy as np

import gmrf_core as gm
from gmrf_core.formula import formula, latent_table

FORMULA = "SID74 ~ 1 + nonwhite + f(NAME, model='bym2', graph=counties)"


def load_sids():
    """The NC SIDS GeoDataFrame with ``expected`` and ``nonwhite`` columns added."""
    import geopandas
    from libpysal import examples

    counties = geopandas.read_file(examples.get_path("sids2.shp"))
    rate = counties["SID74"].sum() / counties["BIR74"].sum()
    counties["expected"] = counties["BIR74"] * rate
    counties["nonwhite"] = counties["NWBIR74"] / counties["BIR74"]
    return counties


def build_model(counties):
    """The BYM2–Poisson model of the module docstring, from the formula."""
    return formula(
        FORMULA,
        data=counties,
        family="poisson",
        exposure="expected",
        context={"counties": counties},
    )


def posterior_fit(model, method="auto", progress=False):
    """``gm.inla`` (θ integrated out) when available and asked for, else ``gm.fit``."""
    use_inla = method == "inla" or (method == "auto" and hasattr(gm, "inla"))
    if use_inla:
        return gm.inla(model, progress=progress, rng=1)
    return gm.fit(model, progress=progress)


def relative_risk(result, model, draws=4000, rng=0):
    """Posterior mean, 95 % interval and P(RR > 1) of every county's relative risk.

    RR_i = exp(η_i) (the exposure carries E_i). With an INLA result: Monte Carlo over
    joint draws of (θ, x, β); with a FitResult: the Gaussian approximation at θ̂,
    log RR_i ~ N(η*_i, var η_i), so E RR = exp(m + s²/2) and P(RR > 1) = Φ(m / s).
    """
    from scipy.stats import norm

    if hasattr(result, "sample") and hasattr(result, "latent_mean"):
        sample = result.sample(draws, rng=rng)
        z = np.hstack([sample["latent"], sample["fixed"]])
        eta = z @ model.A_full.T.toarray() + model.offset
        risk = np.exp(eta)
        return {
            "mean": risk.mean(axis=0),
            "q0.025": np.quantile(risk, 0.025, axis=0),
            "q0.975": np.quantile(risk, 0.975, axis=0),
            "exceedance": (eta > 0).mean(axis=0),
        }
    approximation = model.laplace(result.theta)
    mean = approximation.linear_predictor
    sd = np.sqrt(approximation.linear_predictor_variance())
    return {
        "mean": np.exp(mean + 0.5 * sd**2),
        "q0.025": np.exp(mean + norm.ppf(0.025) * sd),
        "q0.975": np.exp(mean + norm.ppf(0.975) * sd),
        "exceedance": norm.cdf(mean / sd),
    }


def draw_maps(counties, risk, path):
    """Two choropleths: posterior mean relative risk and P(RR > 1)."""
    from gmrf_core.plots import _pyplot, plot_latent_map

    plt = _pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(9, 7.5))
    plot_latent_map(
        risk["mean"],
        geometry=counties,
        ax=axes[0],
        cmap="RdBu_r",
        vmin=0.0,
        vmax=2.0,
        title="posterior mean relative risk of SIDS, 1974–78",
    )
    plot_latent_map(
        risk["exceedance"],
        geometry=counties,
        ax=axes[1],
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        title="P(RR > 1)",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(output="sids_map.png", method="auto", draws=4000, progress=False, stream=None):
    """Fit, print the summary and write the maps; returns the pieces for inspection."""
    stream = sys.stdout if stream is None else stream
    counties = load_sids()
    model = build_model(counties)
    print(
        f"NC SIDS 1974–78: {len(counties)} counties, {int(counties['SID74'].sum())} deaths, "
        f"{int(counties['BIR74'].sum())} births",
        file=stream,
    )
    print(f"graph: {model.terms['NAME'].info['graph'].describe()}", file=stream)
    print(f"model: {FORMULA}  (family poisson, exposure = expected)", file=stream)
    result = posterior_fit(model, method=method, progress=progress)
    print(result.summary(), file=stream)  # θ and the fixed effects, by name
    risk = relative_risk(result, model, draws=draws)
    effects = latent_table(result, model, "NAME")
    table = effects[["mean", "sd"]].rename(columns={"mean": "b mean", "sd": "b sd"})
    table["RR mean"] = risk["mean"]
    table["RR q0.025"] = risk["q0.025"]
    table["RR q0.975"] = risk["q0.975"]
    table["P(RR>1)"] = risk["exceedance"]
    table.insert(0, "deaths", counties["SID74"].to_numpy())
    table.insert(1, "expected", counties["expected"].to_numpy())
    top = table.sort_values("RR mean", ascending=False).head(8)
    print("\ncounties with the highest posterior relative risk:", file=stream)
    print(top.to_string(float_format=lambda v: f"{v:.3f}"), file=stream)
    if output:
        draw_maps(counties, risk, output)
        print(f"\nwrote {output}", file=stream)
    return {"model": model, "result": result, "table": table, "risk": risk}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="sids_map.png", help="PNG of the two maps")
    parser.add_argument("--method", choices=("auto", "inla", "fit"), default="auto")
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--progress", action="store_true", help="print the optimizer's steps")
    args = parser.parse_args(argv)
    run(output=args.output, method=args.method, draws=args.draws, progress=args.progress)


if __name__ == "__main__":
    main()
