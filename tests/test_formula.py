"""Tests of gm.formula: data frame + formula -> LatentGaussianModel, names and tables."""

import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import norm

import gmrf_core as gm
from gmrf_core import likelihoods, models
from gmrf_core.errors import InputError
from gmrf_core.formula import FormulaTerms, fixed_table, formula, latent_table

pd = pytest.importorskip("pandas")
pytest.importorskip("formulaic")


def path_graph(n):
    return sp.csr_matrix(np.eye(n, k=1) + np.eye(n, k=-1))


def grid_graph(rows, cols):
    """0/1 adjacency of a rows × cols lattice (rook neighbours)."""
    n = rows * cols
    dense = np.zeros((n, n))
    for i in range(rows):
        for j in range(cols):
            k = i * cols + j
            if j + 1 < cols:
                dense[k, k + 1] = dense[k + 1, k] = 1
            if i + 1 < rows:
                dense[k, k + cols] = dense[k + cols, k] = 1
    return sp.csr_matrix(dense)


@pytest.fixture
def frame():
    """County × year panel on a 3 × 3 grid of counties with repeated, missing, unused levels."""
    rng = np.random.default_rng(4)
    m = 70
    county = rng.integers(0, 9, m)
    county[:9] = np.arange(9)
    year = rng.choice([2001, 2002, 2004, 2005, 2006], m)  # 2003 has no data
    region = pd.Categorical(
        rng.choice(["north", "south", "east"], m), categories=["north", "south", "east", "west"]
    )  # noqa: E501
    income = rng.normal(size=m)
    expected = rng.uniform(0.5, 3.0, m)
    cases = rng.poisson(expected * np.exp(0.2 + 0.4 * income)).astype(float)
    cases[[5, 17]] = np.nan  # to be predicted
    return pd.DataFrame(
        {
            "cases": cases,
            "county": county,
            "year": year,
            "region": region,
            "income": income,
            "size": rng.uniform(1.0, 4.0, m),
            "expected": expected,
        }
    )


def one_hot(codes, n):
    A = np.zeros((codes.size, n))
    A[np.arange(codes.size), codes] = 1.0
    return A


def compare_models(model, reference, rng, points=3):
    assert model.theta_names == reference.theta_names
    for _ in range(points):
        theta = reference.theta0 + 0.4 * rng.normal(size=reference.theta0.size)
        value, grad = model.value_and_grad(theta)
        value_ref, grad_ref = reference.value_and_grad(theta)
        assert abs(value - value_ref) <= 1e-12 * max(1.0, abs(value_ref))
        np.testing.assert_allclose(grad, grad_ref, rtol=1e-10, atol=1e-12)


def test_formula_equals_hand_built_model(frame):
    assert gm.formula is formula  # the package exports the function
    W = grid_graph(3, 3)
    model = formula(
        "cases ~ 1 + income + region + np.log(size) + income:np.log(size)"
        " + f(county, model='bym2', graph=W) + f(year, model='ar1')",
        data=frame,
        family="poisson",
        exposure="expected",
        context={"W": W},
    )
    # by hand: levels, projections, design with treatment contrasts (unused 'west' dropped)
    years = np.arange(2001, 2007)
    A_county = one_hot(frame["county"].to_numpy(), 9)
    A = np.hstack(
        [A_county, np.zeros((len(frame), 9)), one_hot(frame["year"].to_numpy() - 2001, 6)]
    )
    region = frame["region"].astype(str).to_numpy()
    log_size = np.log(frame["size"].to_numpy())
    X = np.column_stack(
        [
            np.ones(len(frame)),
            frame["income"],
            region == "south",
            region == "east",
            log_size,
            frame["income"] * log_size,
        ]
    ).astype(float)
    prior = models.Stack([models.BYM2(W), models.AR1(years.size)], labels=["county", "year"])
    lik = likelihoods.Poisson(frame["cases"].to_numpy(), exposure=frame["expected"].to_numpy())
    reference = gm.LatentGaussianModel(prior, lik, A=sp.csr_matrix(A), X=X)
    np.testing.assert_array_equal(model.A.toarray(), A)
    np.testing.assert_array_equal(model.X, X)
    assert model.theta_names == (
        "county.log_tau",
        "county.logit_phi",
        "year.log_tau",
        "year.atanh_rho",
    )
    assert model.terms.fixed_names == (
        "Intercept",
        "income",
        "region[T.south]",
        "region[T.east]",
        "np.log(size)",
        "income:np.log(size)",
    )
    assert model.terms.dropped_fixed == ("region[T.west]",)
    assert list(model.terms["year"].levels) == list(years)  # 2003 is a latent node without data
    compare_models(model, reference, np.random.default_rng(0))


def test_issue_formula_builds_the_hand_built_structure(frame):
    W = grid_graph(3, 3)  # noqa: F841 - found by gm.formula in the caller's namespace
    model = formula(
        "cases ~ 1 + income + f(county, model='bym2', graph=W) + f(year, model='rw1')",
        data=frame,
        family="poisson",
        exposure="expected",
    )
    A = np.hstack(
        [
            one_hot(frame["county"].to_numpy(), 9),
            np.zeros((len(frame), 9)),
            one_hot(frame["year"].to_numpy() - 2001, 6),
        ]
    )
    np.testing.assert_array_equal(model.A.toarray(), A)
    np.testing.assert_array_equal(model.X, np.column_stack([np.ones(len(frame)), frame["income"]]))
    theta = np.array([0.3, -0.4, 1.1])
    reference = models.Stack([models.BYM2(grid_graph(3, 3)), models.RW1(6)])
    np.testing.assert_allclose(
        model.prior.precision(theta).toarray(), reference.precision(theta).toarray(), atol=0
    )
    np.testing.assert_array_equal(model.prior.constraints[0], reference.constraints[0])
    np.testing.assert_array_equal(model.offset, 0.0)
    np.testing.assert_array_equal(model.likelihood.exposure, frame["expected"])
    # two intrinsic blocks and an intercept: the same objective and gradient as by hand
    lik = likelihoods.Poisson(frame["cases"].to_numpy(), exposure=frame["expected"].to_numpy())
    X = np.column_stack([np.ones(len(frame)), frame["income"]])
    by_hand = gm.LatentGaussianModel(
        models.Stack([models.BYM2(grid_graph(3, 3)), models.RW1(6)], labels=["county", "year"]),
        lik,
        A=sp.csr_matrix(A),
        X=X,
    )
    compare_models(model, by_hand, np.random.default_rng(9), points=2)


def test_gaussian_iid_ar1_with_offset_and_weights():
    rng = np.random.default_rng(1)
    m = 40
    df = pd.DataFrame(
        {
            "y": rng.normal(size=m),
            "g": rng.choice(["b", "a", "c"], m),
            "t": rng.choice(np.arange(0.5, 3.0, 0.5), m),  # equally spaced, not integers
            "w": rng.uniform(0.5, 2.0, m),
            "off": rng.normal(size=m),
        }
    )
    model = formula(
        "y ~ 0 + f(g, model='iid', weights=w) + f(t, model='ar1')",
        data=df,
        family="gaussian",
        offset="off",
    )
    levels = np.arange(0.5, 3.0, 0.5)
    codes_g = np.searchsorted(["a", "b", "c"], df["g"])
    codes_t = np.rint((df["t"].to_numpy() - 0.5) / 0.5).astype(int)
    A = np.hstack([one_hot(codes_g, 3) * df["w"].to_numpy()[:, None], one_hot(codes_t, 5)])
    prior = models.Stack([models.IID(3), models.AR1(5)], labels=["g", "t"])
    reference = gm.LatentGaussianModel(
        prior, likelihoods.Gaussian(df["y"].to_numpy()), A=sp.csr_matrix(A), offset=df["off"]
    )
    assert model.n_fixed == 0
    np.testing.assert_allclose(list(model.terms["t"].levels), levels)
    assert list(model.terms["g"].levels) == ["a", "b", "c"]
    compare_models(model, reference, rng)


def test_binomial_bernoulli_nbinomial_and_glm_without_f_terms():
    rng = np.random.default_rng(2)
    m = 30
    df = pd.DataFrame(
        {"x": rng.normal(size=m), "n": rng.integers(1, 6, m), "k": rng.integers(0, 4, m)}
    )
    df["s"] = np.minimum(rng.integers(0, 6, m), df["n"])
    df["b"] = (df["x"] > 0).astype(float)
    X = np.column_stack([np.ones(m), df["x"]])
    cases = [
        (
            "s ~ x + f(k, model='iid')",
            "binomial",
            {"trials": "n"},
            likelihoods.Binomial(df["s"], df["n"]),
        ),
        ("b ~ x + f(k, model='iid')", "bernoulli", {}, likelihoods.Bernoulli(df["b"])),
        ("k ~ x + f(k, model='iid')", "nbinomial", {}, likelihoods.NegativeBinomial(df["k"])),
    ]
    for text, family, extra, lik in cases:
        model = formula(text, data=df, family=family, **extra)
        prior = models.Stack([models.IID(4)], labels=["k"])
        reference = gm.LatentGaussianModel(
            prior, lik, A=sp.csr_matrix(one_hot(df["k"].to_numpy(), 4)), X=X
        )
        compare_models(model, reference, rng, points=2)
    # no f() term: β is the whole latent vector
    glm = formula("k ~ 1 + x", data=df, family="poisson")
    reference = gm.LatentGaussianModel(
        models.Stack([]), likelihoods.Poisson(df["k"]), A=sp.csr_matrix((len(df), 0)), X=X
    )
    compare_models(glm, reference, rng, points=1)
    np.testing.assert_array_equal(glm.terms.fixed_positions, [0, 1])
    assert glm.fixed_names == ("Intercept", "x") and glm.n_fixed == 2


def test_group_gives_a_kronecker_block_with_unit_group_precision(frame):
    model = formula(
        "cases ~ 1 + f(county, model='iid', group=year, group_model='ar1')",
        data=frame,
        family="poisson",
        exposure="expected",
    )
    term = model.terms["county:year"]
    assert model.theta_names == ("county:year.group.atanh_rho", "county:year.main.log_tau")
    theta = np.array([0.3, 0.7])
    rho, tau = np.tanh(0.3), np.exp(0.7)
    nt = 6
    ar1 = np.diag(np.r_[1.0, np.full(nt - 2, 1 + rho**2), 1.0]) - rho * (
        np.eye(nt, k=1) + np.eye(nt, k=-1)
    )
    ar1 /= 1 - rho**2  # marginal precision 1
    expected = np.kron(ar1, tau * np.eye(9))
    np.testing.assert_allclose(model.prior.precision(theta).toarray(), expected, atol=1e-12)
    codes = (frame["year"].to_numpy() - 2001) * 9 + frame["county"].to_numpy()
    np.testing.assert_array_equal(model.A.toarray(), one_hot(codes, 54))
    assert term.levels.names == ["year", "county"]
    assert term.levels[10] == (2002, 1)
    np.testing.assert_array_equal(term.positions, np.arange(54))


def test_spde_and_matern2d_terms_project_coordinates():
    rng = np.random.default_rng(3)
    m = 25
    df = pd.DataFrame({"x": rng.uniform(0, 4, m), "y": rng.uniform(0, 3, m)})
    df["z"] = rng.normal(size=m)
    df.loc[4, "x"] = np.nan  # no location: the field does not enter this observation
    model = formula("z ~ 1 + f(x, y, model='spde', max_area=0.5)", data=df)
    mesh = model.terms["x"].info["mesh"]
    finite = np.isfinite(df["x"]).to_numpy()
    reference = models.projection_matrix(mesh, df[["x", "y"]].to_numpy()[finite]).toarray()
    A = model.A.toarray()
    np.testing.assert_allclose(A[finite], reference)
    np.testing.assert_array_equal(A[~finite], 0.0)
    lattice = formula("z ~ 1 + f(x, y, model='matern2d', shape=(5, 4))", data=df)
    reference = models.lattice_projection((5, 4), df[["x", "y"]].to_numpy()[finite]).toarray()
    np.testing.assert_allclose(lattice.A.toarray()[finite], reference)
    assert lattice.prior.theta_names == ("x.log_range", "x.log_sigma")


def test_graph_ids_map_rows_to_areas_in_any_order():
    neighbours = {"c": ["a"], "a": ["c", "b"], "b": ["a"]}
    df = pd.DataFrame({"y": [1.0, 2.0, 0.0, 3.0], "area": ["b", "b", "c", "a"]})
    model = formula(
        "y ~ 1 + f(area, model='besag', graph=G)",
        data=df,
        family="poisson",
        context={"G": neighbours},
    )
    # the graph's own order: c, a, b
    np.testing.assert_array_equal(model.A.toarray(), one_hot(np.array([2, 2, 0, 1]), 3))
    assert list(model.terms["area"].levels) == ["c", "a", "b"]
    # a SciPy graph with integer node numbers and a node without data
    df2 = pd.DataFrame({"y": [1.0, 2.0, 0.0], "node": [0, 2, 2]})
    model = formula("y ~ f(node, model='besag', graph=W)", data=df2, context={"W": path_graph(4)})
    np.testing.assert_array_equal(model.A.toarray(), one_hot(np.array([0, 2, 2]), 4))


def test_latent_and_fixed_tables_are_labelled(frame):
    model = formula(
        "cases ~ 1 + income + f(county, model='bym2', graph=W) + f(year, model='ar1')",
        data=frame,
        family="poisson",
        exposure="expected",
        context={"W": grid_graph(3, 3)},
    )
    assert isinstance(model.terms, FormulaTerms)
    approximation = model.laplace(model.theta0)
    mode, sd = approximation.mode, approximation.marginal_sd()
    county = latent_table(approximation, model, "county")
    assert list(county.columns) == ["mean", "sd", "q0.025", "q0.5", "q0.975"]
    assert list(county.index) == list(range(9))
    np.testing.assert_allclose(county["mean"], mode[:9])
    np.testing.assert_allclose(county["sd"], sd[:9])
    np.testing.assert_allclose(county["q0.975"], mode[:9] + norm.ppf(0.975) * sd[:9])
    structured = latent_table(approximation, model, "county", part="u")
    np.testing.assert_allclose(structured["mean"], mode[9:18])
    year = latent_table(approximation, model, "year")
    np.testing.assert_allclose(year.loc[2003, "mean"], mode[18 + 2])
    fixed = fixed_table(approximation, model)
    assert list(fixed.index) == ["Intercept", "income"]
    np.testing.assert_allclose(fixed["mean"], mode[-2:])
    with pytest.raises(InputError, match="no term 'nope'"):
        latent_table(approximation, model, "nope")
    with pytest.raises(InputError, match="no part"):
        latent_table(approximation, model, "year", part="u")
    fit = gm.fit(model, progress=False, std_err=False)
    by_method = fit.latent("year")
    np.testing.assert_allclose(by_method["mean"], fit.mode[18:24])
    np.testing.assert_allclose(by_method["sd"], fit.marginal_sd[18:24])
    assert list(by_method.index) == list(range(2001, 2007))
    summary = fit.summary()  # fixed effects by name, with their mode and sd
    assert f"{'income':<12}  {fit.mode[-1]:>12.5f}  {fit.marginal_sd[-1]:>10.5f}" in summary
    plain = gm.LatentGaussianModel(models.IID(3), likelihoods.Gaussian(np.zeros(3)))
    with pytest.raises(InputError, match="not built by gm.formula"):
        latent_table(plain.laplace(plain.theta0), plain, "x")


def test_missing_response_is_predicted(frame):
    model = formula(
        "cases ~ 1 + f(year, model='rw1')", data=frame, family="poisson", exposure="expected"
    )
    assert not model.likelihood.observed[5] and not model.likelihood.observed[17]
    approximation = model.laplace(model.theta0)
    variance = approximation.linear_predictor_variance()
    assert np.all(np.isfinite(variance[[5, 17]])) and np.all(variance[[5, 17]] > 0)


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("nope ~ 1", {}, "unknown response column 'nope'"),
        ("cases ~ 1 + missing_col", {}, "missing_col"),
        ("cases ~ 1 + f(nope, model='iid')", {}, "unknown column 'nope'"),
        ("cases ~ 1 + f(county, model='car9')", {}, "unknown model 'car9'"),
        ("cases ~ 1 + f(county)", {}, r"model='\.\.\.'"),
        ("cases ~ 1 + f(county, model='iid', graph=3)", {}, r"unknown option\(s\) \['graph'\]"),
        ("cases ~ 1 + f(county, model='besag')", {}, "needs graph="),
        ("cases ~ 1 + f(county, model='besag', graph=W5)", {}, "5 areas .* but column 'county'"),
        ("cases ~ 1 + f(county, model='besag', graph=undefined_w)", {}, "'undefined_w'"),
        ("cases ~ 1 - f(county, model='iid')", {}, "added on its own"),
        ("cases ~ 1 + f(county, model='iid') + f(county, model='rw1')", {}, "name="),
        ("cases ~ 1 + f(x, y, model='iid')", {}, "takes one column"),
        ("cases ~ 1 + f(county, model='spde')", {}, "two coordinate columns"),
        ("cases ~ 1 + f(income, model='rw1')", {}, "irregularly spaced"),
        ("cases ~ 1 + f(county, model='iid', group=nope)", {}, "unknown column 'nope'"),
        ("cases ~ 1 + f(county, model='iid', group=year, group_model='x')", {}, "group_model"),
        ("cases ~ 1 + f(county, model='bym2', graph=W9, group=year)", {}, "not available for bym2"),
        ("cases ~ 1 ~ 2", {}, "one '~'"),
        ("cases ~ 1 + (income", {}, "unbalanced"),
        ("cases ~ 0", {}, "no terms"),
        ("cases ~ 1", {"family": "weibull"}, "unknown family 'weibull'"),
        ("cases ~ 1", {"exposure": "nope"}, "exposure='nope' is not a column"),
        ("cases ~ 1", {"family": "gaussian", "exposure": "expected"}, "exposure= applies"),
        ("cases ~ 1", {"family": "binomial"}, "needs trials="),
        ("cases ~ 1", {"exposures": "expected"}, r"unknown keyword argument\(s\) \['exposures'\]"),
    ],
)
def test_formula_errors_name_the_problem(frame, text, kwargs, message):
    context = {"W5": path_graph(5), "W9": grid_graph(3, 3)}
    kwargs = {"family": "poisson", **kwargs}
    with pytest.raises(InputError, match=message):
        formula(text, data=frame, context=context, **kwargs)


def test_family_response_mismatch(frame):
    bad = frame.copy()
    bad.loc[3, "cases"] = -1.0
    with pytest.raises(InputError, match="'cases' has -1 at row 3"):
        formula("cases ~ 1", data=bad, family="poisson")
    bad.loc[3, "cases"] = 1.5
    with pytest.raises(InputError, match="'cases' has 1.5 at row 3"):
        formula("cases ~ 1", data=bad, family="nbinomial")
    trials = frame.assign(n=1.0, cases=frame["cases"].fillna(0) + 2)
    with pytest.raises(InputError, match="successes exceed trials at row 0"):
        formula("cases ~ 1", data=trials, family="binomial", trials="n")
    with pytest.raises(InputError, match="'cases'.*Bernoulli"):
        formula("cases ~ 1", data=trials, family="bernoulli")
    missing = frame.copy()
    missing.loc[2, "income"] = np.nan
    with pytest.raises(InputError, match="income"):
        formula("cases ~ 1 + income", data=missing, family="poisson")
    with pytest.raises(InputError, match="DataFrame"):
        formula("cases ~ 1", data=[1, 2, 3], family="poisson")


# ------------------------------------------------------------------ the real-data example
_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "areal.py"


def _load_example():
    name = "gmrf_examples_areal"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_areal_example_runs_on_the_shipped_nc_sids_data(tmp_path):
    pytest.importorskip("geopandas")
    libpysal = pytest.importorskip("libpysal")
    example = _load_example()
    output = tmp_path / "sids.png"
    stream = io.StringIO()
    pieces = example.run(output=str(output), method="fit", stream=stream)
    text = stream.getvalue()
    assert output.stat().st_size > 10_000
    assert "100 counties, 667 deaths" in text and "nonwhite" in text
    model, result, table = pieces["model"], pieces["result"], pieces["table"]
    assert result.success and len(table) == 100
    # the same model built by hand from the shapefile: libpysal queen weights, own design
    counties = example.load_sids()
    queen = libpysal.weights.Queen.from_dataframe(counties, use_index=False)
    expected = counties["BIR74"] * counties["SID74"].sum() / counties["BIR74"].sum()
    X = np.column_stack([np.ones(100), counties["NWBIR74"] / counties["BIR74"]])
    reference = gm.LatentGaussianModel(
        models.Stack([models.BYM2(sp.csr_matrix(queen.sparse))], labels=["NAME"]),
        likelihoods.Poisson(counties["SID74"].to_numpy(), exposure=expected.to_numpy()),
        A=sp.hstack([sp.identity(100), sp.csr_matrix((100, 100))]),  # η sees b, not u
        X=X,
    )
    assert model.theta_names == reference.theta_names
    np.testing.assert_array_equal(model.A_full.toarray(), reference.A_full.toarray())
    value = reference.objective(result.theta)
    assert abs(value - result.fun) <= 1e-10 * abs(value)
    # table rows follow the counties; RR = exp(η) with η's Gaussian approximation at θ̂
    assert list(table.index) == list(counties["NAME"])
    approximation = reference.laplace(result.theta)
    eta = approximation.linear_predictor
    sd = np.sqrt(approximation.linear_predictor_variance())
    np.testing.assert_allclose(table["P(RR>1)"], norm.cdf(eta / sd), rtol=1e-8)
    np.testing.assert_allclose(table["RR mean"], np.exp(eta + sd**2 / 2), rtol=1e-8)
    # more deaths than expected where the posterior is confident the risk exceeds 1
    confident = table["P(RR>1)"] > 0.99
    assert confident.any()
    assert np.all(table.loc[confident, "deaths"] > table.loc[confident, "expected"])


# ------------------------------------------------------------------------------- plots
def test_forest_plot_shows_every_fixed_effect(frame, tmp_path):
    from gmrf_core.plots import plot_fixed_effects

    model = formula(
        "cases ~ 1 + income + region + f(year, model='ar1')",
        data=frame,
        family="poisson",
        exposure="expected",
    )
    approximation = model.laplace(model.theta0)
    fig = plot_fixed_effects(approximation, model, path=str(tmp_path / "forest.png"))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["Intercept", "income", "region[T.south]", "region[T.east]"]
    points = ax.lines[0].get_xdata()
    np.testing.assert_allclose(points, approximation.mode[-4:])
    assert (tmp_path / "forest.png").stat().st_size > 1000


def test_latent_maps_on_polygons_meshes_and_lattices(tmp_path):
    import matplotlib.pyplot as plt

    from gmrf_core.plots import plot_latent, plot_latent_map

    gpd = pytest.importorskip("geopandas")
    shapely = pytest.importorskip("shapely")
    rng = np.random.default_rng(5)
    # polygons: a 2 × 3 grid of squares named out of order relative to the data's levels
    names = ["f", "a", "c", "e", "b", "d"]
    cells = [shapely.box(j, i, j + 1, i + 1) for i in range(2) for j in range(3)]
    areas = gpd.GeoDataFrame({"area": names}, geometry=cells)
    df = pd.DataFrame({"area": rng.choice(names, 40), "y": rng.poisson(2.0, 40).astype(float)})
    model = formula(
        "y ~ 1 + f(area, model='besag', graph=areas)",
        data=df,
        family="poisson",
        context={"areas": areas},
    )
    approximation = model.laplace(model.theta0)
    # polygons given in another order are matched to the levels by the 'area' column
    path = tmp_path / "a.png"
    fig = plot_latent(approximation, model, "area", geometry=areas.iloc[::-1], path=str(path))
    table = latent_table(approximation, model, "area")
    drawn = fig.axes[0].collections[0].get_array()
    np.testing.assert_allclose(drawn, table.loc[names, "mean"].to_numpy())
    with pytest.raises(InputError, match="pass geometry="):
        plot_latent(approximation, model, "area")
    plt.close("all")
    # mesh: nodal values on a tripcolor; lattice: an image of the reshaped values
    coords = pd.DataFrame({"x": rng.uniform(0, 3, 30), "y": rng.uniform(0, 2, 30)})
    coords["z"] = rng.normal(size=30)
    spde = formula("z ~ 1 + f(x, y, model='spde', max_area=0.4)", data=coords)
    approximation = spde.laplace(spde.theta0)
    fig = plot_latent(approximation, spde, "x")
    np.testing.assert_allclose(
        fig.axes[0].collections[0].get_array(), latent_table(approximation, spde, "x")["mean"]
    )
    values = rng.normal(size=12)
    ax = plot_latent_map(values, shape=(3, 4))
    np.testing.assert_array_equal(ax.images[0].get_array(), values.reshape(3, 4))
    with pytest.raises(InputError, match="exactly one"):
        plot_latent_map(values)
    with pytest.raises(InputError, match="12 values for a 3 × 5 lattice"):
        plot_latent_map(values, shape=(3, 5))
    plt.close("all")


def test_values_islands_and_gaussian_scale():
    df = pd.DataFrame(
        {
            "y": [0.3, -1.2, 0.8, 0.1, 2.0],
            "k": ["b", "a", "b", "d", "a"],
            "t": [1, 2, 2, 5, 4],
            "s": [1.0, 2.0, 0.5, 1.0, 3.0],
        }
    )
    # values= adds a level without data ('c') and fixes the order
    model = formula("y ~ 1 + f(k, model='iid', values=['d', 'c', 'b', 'a'])", data=df, scale="s")
    assert list(model.terms["k"].levels) == ["d", "c", "b", "a"]
    np.testing.assert_array_equal(model.A.toarray(), one_hot(np.array([2, 3, 2, 0, 3]), 4))
    np.testing.assert_array_equal(model.likelihood.scale, df["s"])
    # a missing value in the term's column: the term does not enter that row
    gap = df.assign(k=[np.nan, "a", "b", "d", "a"])
    rows = formula("y ~ 1 + f(k, model='iid')", data=gap).A.toarray()
    np.testing.assert_array_equal(rows, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    with pytest.raises(InputError, match=r"values \['a'\] that are not levels"):
        formula("y ~ 1 + f(k, model='iid', values=['b', 'd'])", data=df)
    # a graph with an island and two components: one constraint per component of 2+ areas
    adjacency = np.zeros((5, 5))
    adjacency[0, 1] = adjacency[1, 0] = adjacency[2, 3] = adjacency[3, 2] = 1.0
    graph = sp.csr_matrix(adjacency)
    besag = formula(
        "y ~ 1 + f(t, model='besag', graph=G, values=[1, 2, 3, 4, 5])",
        data=df,
        context={"G": graph},
    )
    term = besag.terms["t"]
    assert term.info["graph"].islands.tolist() == [4]
    np.testing.assert_array_equal(besag.prior.constraints[0], [[1, 1, 0, 0, 0], [0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(besag.A.toarray(), one_hot(np.array([0, 1, 1, 4, 3]), 5))


def test_spatio_temporal_spde_group_projection():
    rng = np.random.default_rng(6)
    df = pd.DataFrame({"x": rng.uniform(0, 3, 40), "y": rng.uniform(0, 2, 40)})
    df["year"] = rng.integers(2010, 2013, 40)
    df["z"] = rng.normal(size=40)
    model = formula("z ~ 1 + f(x, y, model='spde', max_area=0.5, group=year)", data=df)
    term = model.terms["x:year"]
    mesh = term.info.get("mesh") or model.prior.blocks[0].space_model.mesh
    n = mesh.points.shape[0]
    spatial = models.projection_matrix(mesh, df[["x", "y"]].to_numpy()).toarray()
    expected = np.zeros((40, 3 * n))
    for i, t in enumerate(df["year"].to_numpy() - 2010):
        expected[i, t * n : (t + 1) * n] = spatial[i]
    np.testing.assert_allclose(model.A.toarray(), expected)
    assert model.prior.theta_names == (
        "x:year.group.atanh_rho",
        "x:year.main.log_range",
        "x:year.main.log_sigma",
    )
    assert term.levels.names == ["year", "node"] and len(term.levels) == 3 * n


def test_formula_models_pickle_for_process_executors(frame):
    import pickle

    model = formula(
        "cases ~ 1 + income + f(county, model='iid', group=year)",
        data=frame,
        family="poisson",
        exposure="expected",
    )
    copy = pickle.loads(pickle.dumps(model))
    theta = model.theta0 + 0.3
    assert copy.objective(theta) == model.objective(theta)
    assert copy.terms["county:year"].levels.equals(model.terms["county:year"].levels)
    assert copy.fixed_names == ("Intercept", "income")
