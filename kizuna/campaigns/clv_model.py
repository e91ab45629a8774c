"""Customer-base models: who is still a customer, how often they will buy, what they will spend.

Pure computation on numpy arrays (no database, no web): the caller reads each customer's purchase
summary from storage, and stores what comes out. Two models, both from Fader, Hardie & Lee:

* **BG/NBD** — "“Counting Your Customers” the Easy Way: An Alternative to the Pareto/NBD Model",
  Marketing Science 24(2), 2005 (below: FHL 2005a). While a customer is alive they buy as a Poisson
  process of rate λ; after each purchase they drop out for good with probability p. Across
  customers λ ~ Gamma(r, α) (shape r, rate α) and p ~ Beta(a, b). From each customer's summary —
  ``x`` repeat purchases, ``t_x`` the time of the last purchase and ``T`` the time now, both counted
  from their first purchase — it gives P(alive) and the expected number of purchases in the next
  ``t`` time units.
* **Gamma-Gamma** — "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis", Journal of
  Marketing Research 42(4), 2005 (below: FHL 2005b). Each transaction's value is Gamma(p, ν), the
  rate ν ~ Gamma(q, γ) across customers. From a customer's ``x`` repeat purchases and their average
  value ``m̄`` it gives the expected value of their future transactions (the average order value).

The model-based LTV (:func:`model_ltv`) is expected purchases over a horizon × expected average order
value × gross margin, discounted per period if asked.

Units: time may be days or weeks or anything else, as long as ``t_x``, ``T`` and the horizon use the
same unit. Changing the unit rescales α alone (λ is a rate per unit of time: days instead of weeks
multiply α by 7; r, a, b, P(alive) and the expected purchases over the same span of real time do not
change). Likewise money: γ is in the currency's unit, p and q have none.

Not the same as Kizuna's ``recency_days`` (the days *since* the last order): here ``t_x`` is the time
*from the first purchase to the last one*, so ``T - t_x`` is that recency. Orders of the same period
(the same day, when time is in days) count as one purchase, as in the papers' CDNOW data, so that a
repeat purchase always comes after the first one (``t_x > 0`` whenever ``x > 0``).

Written from the papers' formulas, not taken from a library: `lifetimes` has had no release since
0.11.3 (2020), its fork `btyd` has one alpha release (0.1a1) that pins autograd 1.4, which does not
import on Python 3.11, and the maintained successor, pymc-marketing's CLV module, brings some 50
packages (PyMC, PyTensor, numba, pandas, matplotlib, scikit-learn ...) into the server for what is
four parameters fitted by maximum likelihood. Checked in ``tests/campaigns/test_clv_model.py``
against the papers' CDNOW estimates and against the model's definition integrated numerically.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

__all__ = [
    "BGNBDModel",
    "FitError",
    "GammaGammaModel",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "model_ltv",
]

FloatArray = NDArray[np.float64]

# A fitted log-parameter beyond this (e^10 ≈ 22,000, after time and money are rescaled to the
# data's own scale) means the optimiser ran off towards a boundary of the parameter space: the
# data have no interior maximum (e.g. nobody seems to drop out, or everyone drops out alike), and
# what it stopped at is not an estimate.
_LOG_PARAM_LIMIT = 10.0
# Largest gradient of the mean log-likelihood (per customer, with respect to log-parameters) that
# still counts as a maximum; L-BFGS-B ends near 1e-9 on well-posed data.
_GRADIENT_TOLERANCE = 1e-5


class FitError(RuntimeError):
    """The maximum-likelihood fit did not converge to an interior maximum: no parameters are given,
    rather than wrong ones."""


# --------------------------------------------------------------------------------------------
# input checks


def _array(name: str, values: ArrayLike) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numbers: {error}") from None
    if array.ndim > 1:
        raise ValueError(f"{name} must be a number or a one-dimensional array, not shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name} must be finite numbers: {_where(bad)} is NaN or infinite")
    return array


def _where(mask: NDArray[np.bool_]) -> str:
    flat = np.atleast_1d(mask)
    count = int(flat.sum())
    first = int(np.flatnonzero(flat)[0])
    return f"{count} value{'s' if count > 1 else ''} (first at index {first})"


def _refuse(mask: NDArray[np.bool_], rule: str, **columns: FloatArray) -> None:
    """Raise a ValueError naming the rule, how many customers break it and the first one."""
    if not mask.any():
        return
    flat = np.atleast_1d(mask)
    first = int(np.flatnonzero(flat)[0])
    shown = ", ".join(f"{name}={np.atleast_1d(column)[first]:g}" for name, column in columns.items())
    count = int(flat.sum())
    raise ValueError(
        f"{rule}: {count} customer{'s' if count > 1 else ''} break{'' if count > 1 else 's'} this "
        f"(first at index {first}: {shown})"
    )


def _customers(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, fitting: bool) -> tuple[FloatArray, ...]:
    """Checks a purchase summary (x, t_x, T) and returns it as float arrays of one shape."""
    arrays = [_array(name, values) for name, values in (("x", x), ("t_x", t_x), ("T", T))]
    if fitting:
        if len({a.shape for a in arrays}) > 1 or arrays[0].ndim != 1:
            shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(("x", "t_x", "T"), arrays, strict=True))
            raise ValueError(f"x, t_x and T must be one-dimensional arrays of the same length ({shapes})")
        if arrays[0].size == 0:
            raise ValueError("no customers: x, t_x and T are empty")
    else:
        try:
            arrays = list(np.broadcast_arrays(*arrays))
        except ValueError:
            raise ValueError(
                f"x, t_x and T must have the same length (shapes {[a.shape for a in arrays]})"
            ) from None
    x_, t_x_, T_ = arrays
    columns = {"x": x_, "t_x": t_x_, "T": T_}
    _refuse(x_ < 0, "x (repeat purchases) must not be negative", **columns)
    _refuse(x_ != np.floor(x_), "x (repeat purchases) must be a whole number", **columns)
    _refuse(t_x_ < 0, "t_x (time of the last purchase) must not be negative", **columns)
    _refuse(T_ < 0, "T (time since the first purchase) must not be negative", **columns)
    _refuse(t_x_ > T_, "t_x must not be after T (the last purchase cannot be later than now)", **columns)
    _refuse(
        (x_ == 0) & (t_x_ != 0),
        "t_x must be 0 when x is 0 (t_x is the time from the first purchase to the last one, "
        "not the time since the last one)",
        **columns,
    )
    _refuse(
        (x_ > 0) & (t_x_ == 0),
        "t_x must be greater than 0 when x > 0 (a repeat purchase comes after the first one: "
        "count purchases of the same period as one)",
        **columns,
    )
    return x_, t_x_, T_


def _horizon(name: str, t: ArrayLike) -> FloatArray:
    horizon = _array(name, t)
    bad = horizon < 0
    if bad.any():
        raise ValueError(f"{name} must not be negative: {_where(bad)}")
    return horizon


def _result(values: FloatArray) -> FloatArray:
    return values[()] if values.ndim == 0 else values  # a number in, a number out


def _positive(model: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(model, name)
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number greater than 0, not {value!r}")


# --------------------------------------------------------------------------------------------
# fitting


def _maximise(
    negative_mean_ll: Callable[[FloatArray], float], start: FloatArray, *, max_iterations: int, what: str
) -> FloatArray:
    """Minimises a negative mean log-likelihood over log-parameters; returns the minimiser only if
    it is an interior maximum of the likelihood, else raises FitError.

    The optimiser's own success flag is not the test: L-BFGS-B sometimes stops on "abnormal
    termination in line search" at the optimum (the function is flat to machine precision there),
    and may report success in a flat valley running off to infinity. The test is what a maximum
    is: finite log-parameters inside a sane range (a valley running off to a boundary ends outside
    it), a gradient of ~0 (central differences) and a negative-definite Hessian of the
    log-likelihood (not a saddle).
    """
    function = negative_mean_ll
    limit = _LOG_PARAM_LIMIT + 5  # room beyond the sane range, so running off shows as such
    with np.errstate(all="ignore"):  # a trial point may overflow; it gets +inf, never chosen
        result = optimize.minimize(
            function,
            start,
            method="L-BFGS-B",
            jac="3-point",
            bounds=[(-limit, limit)] * start.size,
            options={"maxiter": max_iterations, "ftol": 1e-15, "gtol": 1e-10},
        )
        theta = np.asarray(result.x, dtype=np.float64)
        message = str(result.message)
        if not (np.all(np.isfinite(theta)) and math.isfinite(float(result.fun))):
            raise FitError(f"{what}: the optimiser ended on a non-finite likelihood ({message})")
        if np.any(np.abs(theta) > _LOG_PARAM_LIMIT):
            raise FitError(
                f"{what}: a parameter ran off towards the edge of its range (log-parameters "
                f"{np.round(theta, 2)}): these data have no interior maximum ({message})"
            )
        gradient = _gradient(function, theta)
        if not np.all(np.abs(gradient) < _GRADIENT_TOLERANCE):
            raise FitError(f"{what}: did not converge, gradient {gradient} where it stopped ({message})")
        hessian = _hessian(function, theta)
    if not np.all(np.isfinite(hessian)) or np.linalg.eigvalsh(hessian).min() <= 0:
        raise FitError(f"{what}: stopped on a saddle or a flat ridge, not a maximum ({message})")
    return theta


def _gradient(function: Callable[[FloatArray], float], theta: FloatArray, step: float = 1e-5) -> FloatArray:
    gradient = np.empty_like(theta)
    for i in range(theta.size):
        shift = np.zeros_like(theta)
        shift[i] = step
        gradient[i] = (function(theta + shift) - function(theta - shift)) / (2 * step)
    return gradient


def _hessian(function: Callable[[FloatArray], float], theta: FloatArray, step: float = 1e-4) -> FloatArray:
    n = theta.size
    hessian = np.empty((n, n))
    unit = np.eye(n) * step
    for i in range(n):
        for j in range(i, n):
            hessian[i, j] = hessian[j, i] = (
                function(theta + unit[i] + unit[j]) - function(theta + unit[i] - unit[j])
                - function(theta - unit[i] + unit[j]) + function(theta - unit[i] - unit[j])
            ) / (4 * step * step)
    return hessian


def _bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    """Each customer's log-likelihood, FHL 2005a eq. (6):

        L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
            + δ(x>0) · B(a+1, b+x−1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x))

    The first term: still alive at T; the second: dropped out right after the purchase at t_x.
    Their common factor is taken out and the two are added in log space (logaddexp), because each
    alone under- or overflows for a frequent buyer (Γ(r+x), (α+T)^(r+x)). The second term's beta
    ratio is the first's times a/(b+x−1): B(a+1, b+x−1) = B(a, b+x) · a/(b+x−1).
    """
    common = (
        special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        + special.betaln(a, b + x) - special.betaln(a, b)
    )
    alive = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    # b + x − 1 is only used where x ≥ 1, where it is ≥ b > 0; elsewhere b keeps the log defined
    dropped = np.log(a) - np.log(np.where(repeat, b + x - 1, b)) - (r + x) * np.log(alpha + t_x)
    return common + np.where(repeat, np.logaddexp(alive, dropped), alive)


def fit_bgnbd(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, max_iterations: int = 1_000
) -> BGNBDModel:
    """Fits the BG/NBD model's r, α, a, b by maximum likelihood (FHL 2005a §4: the sum over
    customers of the log of eq. (6)).

    ``x``: repeat purchases (whole numbers ≥ 0); ``t_x``: time of the last purchase counted from the
    first (0 when x is 0); ``T``: time from the first purchase to the end of the data. One entry
    per customer. Raises ValueError on bad data, FitError when the fit does not converge.
    """
    x_, t_x_, T_ = _customers(x, t_x, T, fitting=True)
    if not (x_ > 0).any():
        raise ValueError("cannot fit BG/NBD: no customer has a repeat purchase (every x is 0)")
    # Time is rescaled so the longest T is 1: α then starts near its estimate whatever the unit
    # (days, weeks), and one limit on the log-parameters fits every unit. Only α carries the unit.
    scale = float(T_.max())
    t_x_s, T_s = t_x_ / scale, T_ / scale

    def negative_mean_ll(theta: FloatArray) -> float:
        r, alpha, a, b = np.exp(theta)
        value = -float(np.mean(_bgnbd_log_likelihood(r, alpha, a, b, x_, t_x_s, T_s)))
        return value if math.isfinite(value) else math.inf

    theta = _maximise(negative_mean_ll, np.zeros(4), max_iterations=max_iterations, what="BG/NBD fit")
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    alpha *= scale
    # The log-likelihood is reported in the caller's unit: rescaling time adds Σ x·log(scale) to
    # it, which moves no estimate but would make the figure depend on the rescaling.
    return BGNBDModel(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        log_likelihood=float(np.sum(_bgnbd_log_likelihood(r, alpha, a, b, x_, t_x_, T_))),
        n_customers=int(x_.size),
    )


def _gamma_gamma_log_likelihood(
    p: float, q: float, gamma: float, x: FloatArray, m: FloatArray
) -> FloatArray:
    """Each customer's log-likelihood of their average transaction value m̄ over x transactions
    (FHL 2005b, the Gamma-Gamma spend model):

        f(m̄ | p, q, γ, x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q · m̄^(px−1) · x^(px) / (γ + x m̄)^(px+q)

    (the sum of x Gamma(p, ν) values is Gamma(px, ν), so m̄ is Gamma(px, xν); ν ~ Gamma(q, γ)
    integrated out).
    """
    px = p * x
    return (
        special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q)
        + q * np.log(gamma) + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(gamma + x * m)
    )


def _spend(x: ArrayLike, m: ArrayLike, *, fitting: bool) -> tuple[FloatArray, FloatArray]:
    x_, m_ = _array("x", x), _array("average_value", m)
    if fitting:
        if x_.shape != m_.shape or x_.ndim != 1:
            raise ValueError(
                f"x and average_value must be one-dimensional arrays of the same length ({x_.shape}, {m_.shape})"
            )
        if x_.size == 0:
            raise ValueError("no customers: x and average_value are empty")
    else:
        try:
            x_, m_ = np.broadcast_arrays(x_, m_)
        except ValueError:
            raise ValueError(f"x and average_value must have the same length ({x_.shape}, {m_.shape})") from None
    columns = {"x": x_, "average_value": m_}
    _refuse(x_ < 0, "x (repeat purchases) must not be negative", **columns)
    _refuse(x_ != np.floor(x_), "x (repeat purchases) must be a whole number", **columns)
    _refuse(m_ < 0, "average_value must not be negative", **columns)
    _refuse(
        (x_ > 0) & (m_ == 0),
        "average_value must be greater than 0 when x > 0 (the average value of the repeat purchases)",
        **columns,
    )
    return x_, m_


def fit_gamma_gamma(
    x: ArrayLike, average_value: ArrayLike, *, max_iterations: int = 1_000
) -> GammaGammaModel:
    """Fits the Gamma-Gamma spend model's p, q, γ by maximum likelihood (FHL 2005b).

    ``x``: repeat purchases; ``average_value``: the average value of those repeat purchases. Only
    customers with x > 0 are used (as in the paper: 946 of CDNOW's 2,357); the others may be passed
    and are left out. The model assumes a customer's spend per order does not depend on how often
    they buy: check that the two are hardly correlated before relying on it.
    """
    x_, m_ = _spend(x, average_value, fitting=True)
    repeat = x_ > 0
    if not repeat.any():
        raise ValueError("cannot fit Gamma-Gamma: no customer has a repeat purchase (every x is 0)")
    x_, m_ = x_[repeat], m_[repeat]
    # Money is rescaled to its mean, as time is for BG/NBD: only γ carries the currency's unit.
    scale = float(m_.mean())
    m_s = m_ / scale

    def negative_mean_ll(theta: FloatArray) -> float:
        p, q, gamma = np.exp(theta)
        value = -float(np.mean(_gamma_gamma_log_likelihood(p, q, gamma, x_, m_s)))
        return value if math.isfinite(value) else math.inf

    theta = _maximise(negative_mean_ll, np.zeros(3), max_iterations=max_iterations, what="Gamma-Gamma fit")
    p, q, gamma = (float(v) for v in np.exp(theta))
    gamma *= scale
    return GammaGammaModel(
        p=p,
        q=q,
        gamma=gamma,
        log_likelihood=float(np.sum(_gamma_gamma_log_likelihood(p, q, gamma, x_, m_))),
        n_customers=int(x_.size),
    )


# --------------------------------------------------------------------------------------------
# the fitted models


@dataclass(frozen=True)
class BGNBDModel:
    """BG/NBD parameters (FHL 2005a): purchase rates λ ~ Gamma(shape r, rate α), dropout
    probabilities p ~ Beta(a, b). α is in the time unit of the data it was fitted on.

    ``log_likelihood`` and ``n_customers`` describe the fit (None/0 for parameters typed in, such
    as the paper's).
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float | None = field(default=None, compare=False)
    n_customers: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        _positive(self, ("r", "alpha", "a", "b"))

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """P(alive at T | x, t_x, T): the probability that the customer has not dropped out.

        From Bayes' rule on the two terms of the likelihood (FHL 2005a eq. (6); written out in
        Fader, Hardie & Lee, "Computing P(alive) Using the BG/NBD Model", 2008):

            P(alive) = 1 / (1 + δ(x>0) · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x))

        A customer without a repeat purchase is alive with probability 1: the model lets a
        customer drop out only just after a purchase, and the first one does not count.
        Computed as the logistic of the log-odds, which never overflows.
        """
        x_, t_x_, T_ = _customers(x, t_x, T, fitting=False)
        repeat = x_ > 0
        log_odds = (
            math.log(self.a) - np.log(np.where(repeat, self.b + x_ - 1, self.b))
            + (self.r + x_) * (np.log(self.alpha + T_) - np.log(self.alpha + t_x_))
        )
        return _result(np.where(repeat, special.expit(-log_odds), 1.0))

    def expected_purchases(self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """E[Y(t) | x, t_x, T]: the expected number of purchases in the next t time units (FHL 2005a
        eq. (10)):

            (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) · ₂F₁(r+x, b+x; a+b+x−1; z)] · P(alive),
            z = t/(α+T+t)

        The hypergeometric factor is evaluated after Euler's transformation (DLMF 15.8.1,
        ₂F₁(A, B; C; z) = (1−z)^(C−A−B) ₂F₁(C−A, C−B; C; z)), which turns the bracket into

            1 − (1−z)^(a−1) · ₂F₁(a+b−1−r, a−1; a+b+x−1; z).

        The direct form multiplies a ₂F₁ that grows without bound with x by a power that goes to 0
        (the "#NUM!" problem Fader & Hardie describe for spreadsheets); the transformed one stays
        near 1 for every x, so frequent buyers cost no precision. The formula holds for a < 1 too
        (CDNOW's a is 0.79); at a = 1 exactly it is 0/0 and the value is taken at a = 1 + 1e-7,
        as E is continuous in a.
        """
        horizon = _horizon("t", t)
        x_, t_x_, T_ = _customers(x, t_x, T, fitting=False)
        try:
            horizon, x_, t_x_, T_ = np.broadcast_arrays(horizon, x_, t_x_, T_)
        except ValueError:
            raise ValueError(f"t must be one number or one per customer (shapes {horizon.shape}, {x_.shape})") from None
        r, alpha, b = self.r, self.alpha, self.b
        a = self.a if abs(self.a - 1) > 1e-7 else 1 + 1e-7
        z = horizon / (alpha + T_ + horizon)
        h = special.hyp2f1(a + b - 1 - r, a - 1, a + b + x_ - 1, z)
        # 1 − (1−z)^(a−1)·h, without cancellation when the two are close (small t, a near 1)
        bracket = -np.expm1((a - 1) * np.log1p(-z) + np.log(h))
        expected = (a + b + x_ - 1) / (a - 1) * bracket * self.p_alive(x_, t_x_, T_)
        return _result(np.asarray(expected, dtype=np.float64))

    def expected_purchases_new(self, t: ArrayLike) -> FloatArray:
        """E[X(t)]: purchases expected in the first t time units after a customer's first purchase
        (FHL 2005a eq. (9)), i.e. eq. (10) for a customer seen only at their first purchase
        (x = 0, t_x = 0, T = 0)."""
        horizon = _horizon("t", t)
        zeros = np.zeros_like(horizon)
        return self.expected_purchases(horizon, zeros, zeros, zeros)


@dataclass(frozen=True)
class GammaGammaModel:
    """Gamma-Gamma parameters (FHL 2005b): a transaction's value is Gamma(p, ν), ν ~ Gamma(q, γ)
    across customers. γ is in the currency unit of the data it was fitted on."""

    p: float
    q: float
    gamma: float
    log_likelihood: float | None = field(default=None, compare=False)
    n_customers: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        _positive(self, ("p", "q", "gamma"))

    @property
    def mean_value(self) -> float:
        """The population's mean transaction value, E[Z] = pγ/(q−1); finite only for q > 1."""
        if self.q <= 1:
            raise ValueError(f"the spend model has no finite mean transaction value (q = {self.q:g} ≤ 1)")
        return self.p * self.gamma / (self.q - 1)

    def expected_average_value(self, x: ArrayLike, average_value: ArrayLike) -> FloatArray:
        """E[Z | x, m̄]: the expected value of the customer's future transactions (FHL 2005b):

            E = p (γ + x m̄) / (p x + q − 1)
              = (q−1)/(px+q−1) · pγ/(q−1) + px/(px+q−1) · m̄

        a weighted mean of the population's mean and the customer's own average, weighted towards
        their own the more repeat purchases they made. A customer with x = 0 gets the population's
        mean (their average_value is not used). Needs q > 1.
        """
        x_, m_ = _spend(x, average_value, fitting=False)
        self.mean_value  # noqa: B018 - raises for q ≤ 1, where the expectation is infinite
        m_ = np.where(x_ > 0, m_, 0.0)
        return _result(self.p * (self.gamma + x_ * m_) / (self.p * x_ + self.q - 1))


# --------------------------------------------------------------------------------------------
# lifetime value


def model_ltv(
    purchases: BGNBDModel,
    spend: GammaGammaModel,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    average_value: ArrayLike,
    *,
    horizon: float,
    margin: float,
    discount_rate: float = 0.0,
    period: float | None = None,
) -> FloatArray:
    """Model-based (residual) lifetime value of each customer over the next ``horizon`` time units:

        LTV = E[purchases in (T, T+horizon]] × E[average order value] × margin

    with the purchases from BG/NBD (eq. (10)) and the order value from Gamma-Gamma; FHL 2005b
    multiply them the same way, the spend model being independent of the purchase process. It
    values future purchases only (what the customer has bought already is not in it).

    Discounting (optional): with ``discount_rate`` d > 0 the horizon is cut into periods of
    ``period`` time units (the last one may be shorter), and the purchases expected within period
    k = 1, 2, … (the difference of eq. (10) at its end and its start) are divided by (1+d)^k — each
    period's purchases are valued at the period's end. E.g. time in days, ``period=30`` and
    ``discount_rate=0.01`` for 1 % a month. Without it (d = 0) nothing is discounted.
    """
    if not (math.isfinite(horizon) and horizon >= 0):
        raise ValueError(f"horizon must be a finite number ≥ 0, not {horizon!r}")
    if not (math.isfinite(margin) and 0 <= margin <= 1):
        raise ValueError(f"margin must be a fraction between 0 and 1, not {margin!r}")
    if not (math.isfinite(discount_rate) and discount_rate >= 0):
        raise ValueError(f"discount_rate must be a finite number ≥ 0, not {discount_rate!r}")
    value = spend.expected_average_value(x, average_value) * margin
    if discount_rate == 0:
        return _result(np.asarray(purchases.expected_purchases(horizon, x, t_x, T) * value))
    if period is None or not (math.isfinite(period) and period > 0):
        raise ValueError(f"a discount_rate needs the period it applies to (a time span > 0), not {period!r}")
    ends = np.minimum(np.arange(1, math.ceil(horizon / period) + 1) * period, horizon)
    total = np.zeros(np.broadcast(np.asarray(x), np.asarray(t_x), np.asarray(T)).shape)
    before = np.zeros_like(total)
    for k, end in enumerate(ends, start=1):
        cumulative = purchases.expected_purchases(end, x, t_x, T)
        total = total + (cumulative - before) / (1 + discount_rate) ** k
        before = cumulative
    return _result(np.asarray(total * value))
