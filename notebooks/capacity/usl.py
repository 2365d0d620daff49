"""Universal Scalability Law (USL): fit, peak concurrency and its uncertainty.

N. J. Gunther's model of throughput at concurrency N:

    X(N) = lambda * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))

sigma is contention (serialised work, queueing for a shared resource), kappa is coherency
(the cost of keeping shared state consistent, which grows with every pair of workers) and
lambda is the throughput of a single user without either. With kappa > 0 throughput peaks at
N* = sqrt((1 - sigma) / kappa) and falls beyond it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

BOOTSTRAP_SAMPLES = 400


def usl_throughput(n, sigma: float, kappa: float, lam: float):
    """Return the USL throughput at concurrency `n` (a number or an array)."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


# A fitted kappa below this is taken as 0: it is the solver's noise at its lower bound, eight
# orders of magnitude under the 1e-4 of Gunther's SPEC SDM91 example.
KAPPA_ZERO = 1e-12


def peak_concurrency(sigma: float, kappa: float) -> float:
    """Return N* where throughput peaks; infinity when kappa is 0 or sigma is 1 or more."""
    if kappa <= KAPPA_ZERO or sigma >= 1:
        return math.inf
    return math.sqrt((1.0 - sigma) / kappa)


@dataclasses.dataclass(frozen=True)
class UslFit:
    """A fitted USL with standard errors, the peak N* and a bootstrap interval for N*."""

    sigma: float
    kappa: float
    lam: float
    sigma_stderr: float
    kappa_stderr: float
    lam_stderr: float
    peak_n: float
    peak_n_stderr: float
    peak_n_interval: tuple[float, float]
    peak_throughput: float
    r_squared: float
    converged: bool
    points: int

    def predict(self, n):
        return usl_throughput(n, self.sigma, self.kappa, self.lam)

    def as_dict(self) -> dict:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def _solve(n: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit with sigma in [0, 1], kappa in [0, 1] and lambda > 0."""
    # lambda starts from the best throughput per user among the smallest loads, which is close to
    # X(1) when N = 1 was measured and a fair guess otherwise.
    smallest = np.argsort(n)[: max(1, min(3, len(n)))]
    lam0 = float(np.max(x[smallest] / n[smallest]))
    with warnings.catch_warnings():
        # A covariance that cannot be estimated comes back as inf; the caller reports it.
        warnings.simplefilter("ignore", OptimizeWarning)
        params, covariance = curve_fit(
            usl_throughput, n, x, p0=[0.01, 1e-4, lam0],
            bounds=([0.0, 0.0, 0.0], [1.0, 1.0, np.inf]), maxfev=20000,
        )
    return params, covariance


def _peak_throughput(sigma: float, kappa: float, lam: float) -> float:
    """Throughput at N*, or the Amdahl ceiling lambda / sigma when there is no peak."""
    peak = peak_concurrency(sigma, kappa)
    if math.isfinite(peak):
        return float(usl_throughput(peak, sigma, kappa, lam))
    return lam / sigma if sigma > KAPPA_ZERO else math.inf


def _peak_stderr(sigma: float, kappa: float, covariance: np.ndarray) -> float:
    """Standard error of N* by the delta method, from the covariance of sigma and kappa."""
    peak = peak_concurrency(sigma, kappa)
    if not math.isfinite(peak) or not np.all(np.isfinite(covariance[:2, :2])):
        return math.inf
    gradient = np.array([-1.0 / (2.0 * kappa * peak), -peak / (2.0 * kappa)])
    variance = float(gradient @ covariance[:2, :2] @ gradient)
    return math.sqrt(variance) if variance >= 0 else math.inf


def _bootstrap_peak(n: np.ndarray, x: np.ndarray, fitted: np.ndarray, samples: int,
                    seed: int) -> tuple[float, float]:
    """2.5 and 97.5 percentiles of N* over fits to the fitted curve plus resampled residuals."""
    rng = np.random.default_rng(seed)
    residuals = x - fitted
    peaks = []
    for _ in range(samples):
        resampled = fitted + rng.choice(residuals, size=len(residuals), replace=True)
        try:
            params, _ = _solve(n, np.clip(resampled, 1e-12, None))
        except (RuntimeError, ValueError):
            continue
        peaks.append(peak_concurrency(params[0], params[1]))
    if not peaks:
        return (math.nan, math.nan)
    # Fits without a peak give an infinite N*; the "inverted_cdf" method picks sample values, so
    # such a bound comes out as infinity instead of NaN from interpolating between infinities.
    low, high = np.percentile(np.array(peaks), [2.5, 97.5], method="inverted_cdf")
    return (float(low), float(high))


def fit_usl(concurrency, throughput, bootstrap_samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> UslFit:
    """Fit the USL to measured (concurrency, throughput) pairs.

    Needs at least three distinct concurrency levels, because the model has three parameters.
    Raises ValueError otherwise. `converged` is False when the solver gave up or the covariance
    could not be estimated, which happens when the points do not constrain kappa.
    """
    n = np.asarray(concurrency, dtype=float)
    x = np.asarray(throughput, dtype=float)
    if n.shape != x.shape:
        raise ValueError(f"concurrency and throughput differ in length: {n.size} and {x.size}")
    if len(np.unique(n)) < 3:
        raise ValueError(f"the USL fit needs at least 3 distinct concurrency levels, got {len(np.unique(n))}")
    if np.any(n <= 0) or np.any(x < 0):
        raise ValueError("concurrency must be positive and throughput non-negative")

    try:
        params, covariance = _solve(n, x)
        converged = bool(np.all(np.isfinite(covariance)))
    except RuntimeError:
        params, covariance, converged = np.array([math.nan] * 3), np.full((3, 3), math.inf), False

    sigma, kappa, lam = (float(value) for value in params)
    stderr = np.sqrt(np.abs(np.diag(covariance)))
    fitted = usl_throughput(n, sigma, kappa, lam)
    total = float(np.sum((x - x.mean()) ** 2))
    r_squared = 1.0 - float(np.sum((x - fitted) ** 2)) / total if total > 0 else math.nan
    peak = peak_concurrency(sigma, kappa)
    interval = _bootstrap_peak(n, x, fitted, bootstrap_samples, seed) if converged and bootstrap_samples else (
        math.nan, math.nan)
    return UslFit(
        sigma=sigma, kappa=kappa, lam=lam,
        sigma_stderr=float(stderr[0]), kappa_stderr=float(stderr[1]), lam_stderr=float(stderr[2]),
        peak_n=peak, peak_n_stderr=_peak_stderr(sigma, kappa, covariance), peak_n_interval=interval,
        peak_throughput=_peak_throughput(sigma, kappa, lam),
        r_squared=r_squared, converged=converged, points=int(n.size),
    )
