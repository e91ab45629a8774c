"""BG/NBD and Gamma-Gamma (kizuna/campaigns/clv_model.py) against the papers' CDNOW estimates, and
against the model's definition integrated numerically (never against another library's code).

Data: tests/campaigns/data/README.md (the CDNOW summaries that lifetimes ships, time in weeks)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, special, stats

from kizuna.campaigns.clv_model import (
    BGNBDModel,
    FitError,
    GammaGammaModel,
    fit_bgnbd,
    fit_gamma_gamma,
    model_ltv,
)
from kizuna.campaigns.clv_model import _gamma_gamma_log_likelihood  # checked against integration below

DATA = Path(__file__).parent / "data"

# FHL 2005a ("Counting Your Customers the Easy Way"), the BG/NBD fit to CDNOW
PAPER_BGNBD = BGNBDModel(r=0.243, alpha=4.414, a=0.793, b=2.426)
# FHL 2005b ("RFM and CLV"), the Gamma-Gamma fit to CDNOW's 946 repeat buyers
PAPER_GAMMA_GAMMA = GammaGammaModel(p=6.25, q=3.74, gamma=15.44)


def _load(name: str) -> np.ndarray:
    return np.loadtxt(DATA / name, delimiter=",", skiprows=1)


@pytest.fixture(scope="module")
def cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = _load("cdnow_customers_summary.csv")
    assert table.shape == (2357, 4)
    return table[:, 1], table[:, 2], table[:, 3]


@pytest.fixture(scope="module")
def fitted(cdnow) -> BGNBDModel:
    return fit_bgnbd(*cdnow)


@pytest.fixture(scope="module")
def spend() -> tuple[np.ndarray, np.ndarray]:
    table = _load("cdnow_customers_summary_with_transactions.csv")
    return table[:, 1], table[:, 4]


# ------------------------------------------------------------------------------------------------
# the model's definition, integrated numerically: an independent check of the closed forms


def _by_integration(model: BGNBDModel, t: float, x: float, t_x: float, T: float) -> tuple[float, float]:
    """(P(alive), E[purchases in the next t]) straight from the model's assumptions.

    Given λ and p, a customer seen at x, t_x, T is alive with likelihood (1−p)^x λ^x e^(−λT) and
    dropped out after the last purchase with likelihood p (1−p)^(x−1) λ^x e^(−λ t_x); an alive
    customer makes (1 − e^(−λpt))/p purchases in the next t on average (geometric lifetime in
    purchases, Poisson purchases). λ ~ Gamma(r, α) integrates in closed form,
    ∫ λ^x e^(−λc) g(λ) dλ ∝ (α+c)^−(r+x); p ~ Beta(a, b) is integrated by quadrature (QAWS, with
    the Beta density's end-point singularities as the weight). Everything is divided by
    (α+T)^−(r+x) to stay in range.
    """
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    k = r + x

    def alive(p: float) -> float:
        return (1 - p) ** x

    def dropped(p: float) -> float:
        return p * (1 - p) ** (x - 1) * ((alpha + T) / (alpha + t_x)) ** k if x > 0 else 0.0

    def future(p: float) -> float:
        # (1 − ((α+T)/(α+T+pt))^k)/p, with its limit k·t/(α+T) at p → 0
        if p == 0:
            return k * t / (alpha + T)
        return -math.expm1(-k * math.log1p(p * t / (alpha + T))) / p

    def over_p(function) -> float:
        value, _ = integrate.quad(function, 0, 1, weight="alg", wvar=(a - 1, b - 1), epsabs=0, epsrel=1e-11, limit=200)
        return value

    evidence = over_p(lambda p: alive(p) + dropped(p))
    return over_p(alive) / evidence, over_p(lambda p: alive(p) * future(p)) / evidence


# ------------------------------------------------------------------------------------------------
# BG/NBD on CDNOW


def test_bgnbd_reproduces_the_papers_cdnow_estimates(fitted):
    assert (round(fitted.r, 2), round(fitted.alpha, 2), round(fitted.a, 2), round(fitted.b, 2)) == (
        round(0.243, 2),
        round(4.414, 2),
        round(0.793, 2),
        round(2.426, 2),
    )
    # and to the paper's 3 decimals, within one unit of the last digit
    assert fitted.r == pytest.approx(0.243, abs=1e-3)
    assert fitted.alpha == pytest.approx(4.414, abs=1e-3)
    assert fitted.a == pytest.approx(0.793, abs=1e-3)
    assert fitted.b == pytest.approx(2.426, abs=1e-3)
    assert fitted.n_customers == 2357
    # the paper reports LL = −9582.4 for this fit
    assert fitted.log_likelihood == pytest.approx(-9582.4, abs=0.05)


def test_the_papers_example_customer(fitted):
    """FHL 2005a's worked example (CDNOW customer 1): 2 repeat purchases, the last in week 30.43,
    seen until week 38.86 — 1.226 purchases expected in the next 39 weeks."""
    for model in (fitted, PAPER_BGNBD):
        assert round(float(model.expected_purchases(39, 2, 30.43, 38.86)), 3) == 1.226
    expected = fitted.expected_purchases(39, 2, 30.43, 38.86)
    p_alive = fitted.p_alive(2, 30.43, 38.86)
    assert isinstance(expected, float) and isinstance(p_alive, float)  # a number in, a number out
    assert (p_alive, expected) == pytest.approx(_by_integration(fitted, 39, 2, 30.43, 38.86), rel=1e-8)


@pytest.mark.parametrize(
    ("x", "t_x", "T", "t"),
    [
        (0, 0.0, 38.86, 39),  # no repeat purchase
        (1, 1.71, 38.86, 39),  # one early repeat, long silent since
        (7, 29.43, 35.0, 52),
        (29, 37.0, 38.5, 10),  # CDNOW's most frequent buyer is at x = 29
        (150, 30.0, 38.0, 39),  # far beyond CDNOW: the direct form of eq. (10) overflows here
        (3, 12.0, 36.0, 1e-6),  # a tiny horizon: no cancellation in 1 − (…)
        (0, 0.0, 0.0, 39),  # T = 0: first purchase just now
    ],
)
def test_closed_forms_match_the_model_integrated(fitted, x, t_x, T, t):
    p_alive = fitted.p_alive(x, t_x, T)
    expected = fitted.expected_purchases(t, x, t_x, T)
    assert (p_alive, expected) == pytest.approx(_by_integration(fitted, t, x, t_x, T), rel=1e-7)


def test_vectorised_over_customers(fitted, cdnow):
    x, t_x, T = cdnow
    p_alive = fitted.p_alive(x, t_x, T)
    expected = fitted.expected_purchases(39, x, t_x, T)
    assert p_alive.shape == expected.shape == (2357,)
    assert np.all((p_alive > 0) & (p_alive <= 1)) and np.all(expected > 0)
    assert np.all(p_alive[x == 0] == 1)  # the model lets customers drop out only after a purchase
    for i in (0, 1, 500, int(np.argmax(x))):
        assert expected[i] == pytest.approx(fitted.expected_purchases(39, x[i], t_x[i], T[i]), rel=1e-12)
    # more purchases and a later last purchase make a customer more likely alive
    assert fitted.p_alive(5, 35, 38) > fitted.p_alive(5, 20, 38) > fitted.p_alive(5, 5, 38)
    # a horizon per customer
    horizons = np.array([10.0, 39.0])
    assert np.allclose(
        fitted.expected_purchases(horizons, [2, 2], [30.43, 30.43], [38.86, 38.86]),
        [fitted.expected_purchases(10, 2, 30.43, 38.86), fitted.expected_purchases(39, 2, 30.43, 38.86)],
    )


def test_t_zero_is_a_new_customer(fitted):
    """T = 0 (first purchase just now) is eq. (9), the unconditional expectation."""
    assert fitted.p_alive(0, 0, 0) == 1
    assert fitted.expected_purchases(39, 0, 0, 0) == pytest.approx(fitted.expected_purchases_new(39), rel=1e-14)
    assert fitted.expected_purchases_new(0) == 0
    assert fitted.expected_purchases(0, 2, 30.43, 38.86) == 0


def test_days_instead_of_weeks_only_rescale_alpha(cdnow, fitted):
    x, t_x, T = cdnow
    in_days = fit_bgnbd(x, t_x * 7, T * 7)
    assert in_days.alpha == pytest.approx(fitted.alpha * 7, rel=1e-5)
    assert (in_days.r, in_days.a, in_days.b) == pytest.approx((fitted.r, fitted.a, fitted.b), rel=1e-5)
    assert in_days.p_alive(2, 30.43 * 7, 38.86 * 7) == pytest.approx(fitted.p_alive(2, 30.43, 38.86), rel=1e-5)
    assert in_days.expected_purchases(39 * 7, 2, 30.43 * 7, 38.86 * 7) == pytest.approx(
        fitted.expected_purchases(39, 2, 30.43, 38.86), rel=1e-5
    )


# ------------------------------------------------------------------------------------------------
# Gamma-Gamma on CDNOW


def test_gamma_gamma_reproduces_the_papers_cdnow_estimates(spend):
    x, average = spend
    model = fit_gamma_gamma(x, average)  # customers with x = 0 are left out, as in the paper
    assert model.n_customers == 946
    assert (round(model.p, 2), round(model.q, 2)) == (6.25, 3.74)
    # The maximum of the likelihood on these data is γ = 15.4477 (a second optimiser agrees),
    # which rounds to 15.45: the paper's 15.44 is within 0.01 but not equal after rounding.
    assert model.gamma == pytest.approx(15.44, abs=0.01)
    # the fit is the maximum: the paper's rounded estimates have a lower likelihood on these data
    repeat = x > 0
    paper = _gamma_gamma_log_likelihood(PAPER_GAMMA_GAMMA.p, PAPER_GAMMA_GAMMA.q, PAPER_GAMMA_GAMMA.gamma, x[repeat], average[repeat])
    assert model.log_likelihood > float(np.sum(paper))
    # and the closed-form density it maximises is the model's, integrated over ν
    for i in np.flatnonzero(repeat)[:3]:
        assert _gamma_gamma_log_likelihood(model.p, model.q, model.gamma, x[i], average[i]) == pytest.approx(
            _gamma_gamma_log_density(model, x[i], average[i]), rel=1e-8
        )


def _gamma_gamma_log_density(model: GammaGammaModel, x: float, m: float) -> float:
    """log f(m̄ | x) by integrating over ν: m̄ ~ Gamma(shape px, rate xν), ν ~ Gamma(shape q, rate γ)."""
    density, _ = integrate.quad(
        lambda nu: stats.gamma.pdf(m, model.p * x, scale=1 / (x * nu)) * stats.gamma.pdf(nu, model.q, scale=1 / model.gamma),
        0,
        np.inf,
        epsrel=1e-10,
    )
    return math.log(density)


def test_expected_average_value_is_the_posterior_mean(spend):
    x, average = spend
    model = fit_gamma_gamma(x, average)
    assert model.mean_value == pytest.approx(model.p * model.gamma / (model.q - 1))
    for xi, mi in ((1, 11.77), (2, 22.35), (10, 60.0)):
        # E[p/ν | x, m̄] with the posterior of ν integrated numerically
        prior_times_likelihood = lambda nu, xi=xi, mi=mi: (  # noqa: E731
            stats.gamma.pdf(mi, model.p * xi, scale=1 / (xi * nu)) * stats.gamma.pdf(nu, model.q, scale=1 / model.gamma)
        )
        evidence, _ = integrate.quad(prior_times_likelihood, 0, np.inf, epsrel=1e-10)
        mean, _ = integrate.quad(lambda nu: model.p / nu * prior_times_likelihood(nu), 0, np.inf, epsrel=1e-10)
        assert model.expected_average_value(xi, mi) == pytest.approx(mean / evidence, rel=1e-7)
    # a customer without repeat purchases gets the population's mean; more purchases pull towards their own
    assert model.expected_average_value(0, 0) == pytest.approx(model.mean_value)
    own = 100.0
    assert abs(model.expected_average_value(20, own) - own) < abs(model.expected_average_value(1, own) - own)


def test_no_finite_mean_spend_is_refused():
    with pytest.raises(ValueError, match="q = 0.9"):
        GammaGammaModel(p=2, q=0.9, gamma=10).expected_average_value([1, 2], [10, 20])


# ------------------------------------------------------------------------------------------------
# lifetime value


def test_model_ltv(fitted):
    money = PAPER_GAMMA_GAMMA
    x, t_x, T, m = np.array([2, 0, 5]), np.array([30.43, 0, 36]), np.array([38.86, 38.86, 37]), np.array([22.35, 0, 40])
    plain = model_ltv(fitted, money, x, t_x, T, m, horizon=52, margin=0.3)
    assert plain == pytest.approx(fitted.expected_purchases(52, x, t_x, T) * money.expected_average_value(x, m) * 0.3)
    # one period as long as the horizon: everything discounted once
    once = model_ltv(fitted, money, x, t_x, T, m, horizon=52, margin=0.3, discount_rate=0.1, period=52)
    assert once == pytest.approx(plain / 1.1)
    # monthly-ish periods: less than undiscounted, more than all discounted to the last period
    weekly = model_ltv(fitted, money, x, t_x, T, m, horizon=52, margin=0.3, discount_rate=0.01, period=4)
    assert np.all(plain / 1.01**13 < weekly) and np.all(weekly < plain)
    assert model_ltv(fitted, money, x, t_x, T, m, horizon=52, margin=0.3, discount_rate=1e-12, period=4) == pytest.approx(plain)
    assert model_ltv(fitted, money, 2, 30.43, 38.86, 22.35, horizon=0, margin=0.3) == 0
    with pytest.raises(ValueError, match="period"):
        model_ltv(fitted, money, x, t_x, T, m, horizon=52, margin=0.3, discount_rate=0.01)
    with pytest.raises(ValueError, match="margin"):
        model_ltv(fitted, money, x, t_x, T, m, horizon=52, margin=30)


# ------------------------------------------------------------------------------------------------
# bad input and failed fits


@pytest.mark.parametrize(
    ("x", "t_x", "T", "message"),
    [
        ([], [], [], "no customers"),
        ([1, -1], [2, 0], [3, 3], "x .* must not be negative"),
        ([1.5], [2], [3], "whole number"),
        ([1], [-2], [3], "t_x .* must not be negative"),
        ([0], [0], [-3], "T .* must not be negative"),
        ([1, 2], [2, 5], [3, 4], r"t_x must not be after T .*: 1 customer breaks this \(first at index 1: x=2, t_x=5, T=4\)"),
        ([2], [0], [3], "t_x must be greater than 0 when x > 0"),
        ([0], [2], [3], "t_x must be 0 when x is 0"),
        ([1, float("nan")], [1, 1], [2, 2], "finite"),
        ([1, 2], [1], [2, 2], "same length"),
        ([[1]], [[1]], [[2]], "one-dimensional"),
        (["a"], [1], [2], "numbers"),
        ([0, 0], [0, 0], [5, 6], "no customer has a repeat purchase"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(x, t_x, T, message):
    with pytest.raises(ValueError, match=message):
        fit_bgnbd(x, t_x, T)


def test_bad_input_to_predictions(fitted):
    with pytest.raises(ValueError, match="t_x must not be after T"):
        fitted.p_alive([1, 2], [2, 5], [3, 4])
    with pytest.raises(ValueError, match="t must not be negative"):
        fitted.expected_purchases(-1, 1, 2, 3)
    with pytest.raises(ValueError, match="same length"):
        fitted.expected_purchases(1, [1, 2, 3], [2, 2], [3, 3])
    with pytest.raises(ValueError, match="r must be a finite number greater than 0"):
        BGNBDModel(r=0, alpha=1, a=1, b=1)
    with pytest.raises(ValueError, match="average_value must be greater than 0 when x > 0"):
        fit_gamma_gamma([1, 2], [10, 0])
    with pytest.raises(ValueError, match="no customer has a repeat purchase"):
        fit_gamma_gamma([0, 0], [0, 0])
    with pytest.raises(ValueError, match="no customers"):
        fit_gamma_gamma([], [])


def test_a_fit_that_does_not_converge_raises(cdnow):
    x, t_x, T = cdnow
    with pytest.raises(FitError, match="did not converge"):
        fit_bgnbd(x, t_x, T, max_iterations=3)
    # Nobody ever seems to drop out (every last purchase is today): the likelihood has no
    # interior maximum, the dropout parameters run off to a boundary.
    rng = np.random.default_rng(1)
    everyone_alive = rng.integers(1, 10, 200).astype(float)
    with pytest.raises(FitError, match="no interior maximum"):
        fit_bgnbd(everyone_alive, np.full(200, 50.0), np.full(200, 50.0))
    # Everyone spends exactly the same: no spread for Gamma-Gamma to fit.
    with pytest.raises(FitError):
        fit_gamma_gamma([1, 1, 1], [10, 10, 10])


def test_special_functions_agree_with_the_direct_form_where_it_is_safe(fitted):
    """Eq. (10) as printed (no Euler transformation) for a moderate customer: same number."""
    r, alpha, a, b = fitted.r, fitted.alpha, fitted.a, fitted.b
    x, t_x, T, t = 2, 30.43, 38.86, 39
    z = t / (alpha + T + t)
    direct = (
        (a + b + x - 1) / (a - 1)
        * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * special.hyp2f1(r + x, b + x, a + b + x - 1, z))
        / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    )
    assert fitted.expected_purchases(t, x, t_x, T) == pytest.approx(direct, rel=1e-10)


def test_a_equal_to_one(fitted):
    """Eq. (10) is 0/0 at a = 1 exactly; the value there is the limit (E is continuous in a)."""
    at_one = BGNBDModel(r=fitted.r, alpha=fitted.alpha, a=1.0, b=fitted.b)
    expected = at_one.expected_purchases(39, 2, 30.43, 38.86)
    assert math.isfinite(expected)
    assert expected == pytest.approx(_by_integration(at_one, 39, 2, 30.43, 38.86)[1], rel=1e-7)
