"""Embedding drift: centroid (cosine) shift and an MMD two-sample test with a permutation null.

The monitor compares a window of embeddings (newly ingested images, or this window's queries)
with a reference (a sample of the serving index, or the previous window's queries)::

    import numpy as np
    from imgsearch.monitor.drift import mmd_test

    result = mmd_test(reference, current, rng=np.random.default_rng(7))   # (n, d), (m, d) rows
    result.drift         # True when p_value < alpha (exactly when statistic > threshold)
    result.as_dict()     # {"method": "mmd", "statistic": ..., "threshold": ..., "p_value": ...}

The test extends Evidently's ``mmd`` embedding-drift method (the kernel two-sample test of Gretton
et al., 2012) to several kernel widths: the unbiased MMD² with RBF kernels ``exp(-|x - y|² / h)``,
each ``h`` a multiple (``BANDWIDTHS``: 2 down to 1/64) of the median pairwise squared distance of
the pooled sample (the median heuristic). Each MMD² is divided by its permutation null's standard
deviation and the statistic is the largest of them, in null standard deviations: about 0-2 without
drift, tens with it, on the same scale for any model, window or reference size. Its threshold comes
from the same statistic over random relabellings of the pooled rows (a permutation test), so false
alarms stay at ``alpha`` whatever the data. (MMDAgg, Schrab et al. 2023, and MMD-FUSE, Biggs et al.
2023, combine kernel widths in the same spirit.)

Why several widths: a kernel sees differences at the scale of its width. The median heuristic's
width is the distance between unrelated images, while the embeddings of one kind of content sit
much closer together, so new content that lands between the known kinds hides from it. In
``benchmarks/drift.py`` (the demo model, windows of 150 images against 1,000 synthetic scenes)
the single median-heuristic kernel flagged 67 % of the windows in which 20 % of the images were
real photographs and 6 % at 10 %; the maximum over the widths flagged 100 % and 91 %, with the
same false alarms (2 %) and the same sensitivity to a change in the mix of known content. On one
broad cluster (``tests/unit/test_drift.py``'s cones) it is the other way round: the widest kernel
is the most sensitive. The maximum keeps most of the best single width's power in both.

Each side is first subsampled to at most ``max_samples`` rows, so the cost does not grow with the
window: the pooled squared distances are computed once (``(2 * max_samples)²`` float64, 32 MB at
the default, and one kernel of the same size at a time) and every permutation is one column of a
single matrix product with each kernel.

Defaults, as ``benchmarks/drift.py`` measured them: ``alpha`` 0.01 flagged 2 of 100
same-distribution windows (the monitor alarms only when the flag holds for consecutive windows,
so a chance alarm is rarer still); ``permutations`` 200 lets a p-value go below 0.01 (that needs
more than ``1 / alpha - 1``); ``max_samples`` 1000 a side flagged every window with 20 %
photographs, and tests a 10,000 x 512 window against a 10,000-row reference in about 0.5 s
with 77 MiB of arrays (2000 a side: 1.6 s and 275 MiB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = "mmd"
BANDWIDTHS: tuple[float, ...] = tuple(2.0**k for k in range(1, -7, -1))
"""RBF kernel widths, as multiples of the median pairwise squared distance: 2 down to 1/64."""


@dataclass(frozen=True)
class DriftResult:
    """One MMD test of ``current`` against ``reference``."""

    method: str
    statistic: float
    """The largest unbiased MMD² over the kernel widths, each in its null's standard deviations."""
    threshold: float
    """The permutation null's ``1 - alpha`` quantile: ``drift`` is ``statistic > threshold``."""
    p_value: float
    """``(1 + permutations with a statistic >= the observed one) / (1 + permutations)``."""
    drift: bool
    centroid_shift: float
    """``1 - cos`` of the two means, over all the rows given (not only the subsample)."""
    reference_size: int
    """Rows of ``reference`` the test used (after subsampling to ``max_samples``)."""
    current_size: int

    def as_dict(self) -> dict[str, Any]:
        """The report's DRIFT figures but ``consecutive`` (the monitor's run adds it)."""
        return {
            "method": self.method,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "drift": self.drift,
            "centroid_shift": self.centroid_shift,
            "reference_size": self.reference_size,
            "current_size": self.current_size,
        }


def _check_pair(reference: np.ndarray, current: np.ndarray, min_rows: int) -> None:
    for name, rows in (("reference", reference), ("current", current)):
        if rows.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array of rows, got shape {rows.shape}")
        if rows.shape[0] < min_rows:
            raise ValueError(f"{name} needs at least {min_rows} rows, got {rows.shape[0]}")
        if rows.shape[1] == 0:
            raise ValueError(f"{name} rows are empty (dimension 0)")
    if reference.shape[1] != current.shape[1]:
        raise ValueError(
            f"dimension mismatch: reference rows have {reference.shape[1]} values, "
            f"current rows {current.shape[1]}"
        )


def centroid_shift(reference: np.ndarray, current: np.ndarray) -> float:
    """``1 - cos(mean(reference), mean(current))``: 0 for the same direction, up to 2."""
    reference, current = np.asarray(reference), np.asarray(current)
    _check_pair(reference, current, min_rows=1)
    means = [rows.mean(axis=0, dtype=np.float64) for rows in (reference, current)]
    norms = [float(np.linalg.norm(mean)) for mean in means]
    if not all(np.isfinite(norms)):
        raise ValueError("the rows hold non-finite values")
    if min(norms) == 0.0:
        raise ValueError("a mean is the zero vector: it has no direction to compare")
    return float(1.0 - np.dot(means[0], means[1]) / (norms[0] * norms[1]))


def _subsample(rows: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    if rows.shape[0] <= max_samples:
        return np.asarray(rows, dtype=np.float64)
    # Sorted indices read a memory-mapped snapshot front to back; the order does not matter.
    chosen = np.sort(rng.choice(rows.shape[0], size=max_samples, replace=False))
    return np.asarray(rows[chosen], dtype=np.float64)


def _squared_distances(pooled: np.ndarray) -> tuple[np.ndarray, float]:
    """Pairwise squared distances of the pooled rows, and their median off the diagonal."""
    squared = pooled @ pooled.T  # in place from here on: it and one kernel are the largest arrays
    norms = squared.diagonal().copy()
    squared *= -2.0
    squared += norms[:, None]
    squared += norms[None, :]
    np.maximum(squared, 0.0, out=squared)  # rounding can leave tiny negatives
    count = squared.shape[0]
    # The off-diagonal entries as a view: the flat matrix without its first element, cut into
    # rows of count + 1, has the diagonal in its last column.
    off_diagonal = squared.ravel()[1:].reshape(count - 1, count + 1)[:, :-1]
    median = float(np.median(off_diagonal))
    if median == 0.0:  # most rows identical: any positive width keeps the distinct ones apart
        median = float(off_diagonal.mean()) or 1.0
    return squared, median


def _unbiased_mmd2(kernel: np.ndarray, splits: np.ndarray, n: int) -> np.ndarray:
    """Unbiased MMD² for every column of ``splits`` (1.0 marks the rows of the first sample).

    ``kernel`` has a zero diagonal. With a the column, b = 1 - a and K the kernel: the
    within-sample sums are aᵀKa and bᵀKb, the cross sum aᵀKb; all three follow from Ka and the
    row sums of K, so every split costs one column of a single matrix product.
    """
    m = kernel.shape[0] - n
    row_sums = kernel.sum(axis=1)
    within_a = np.einsum("ij,ij->j", splits, kernel @ splits)
    touching_a = row_sums @ splits  # aᵀK1 = aᵀKa + aᵀKb
    cross = touching_a - within_a
    within_b = row_sums.sum() - 2.0 * touching_a + within_a
    return within_a / (n * (n - 1)) + within_b / (m * (m - 1)) - 2.0 * cross / (n * m)


def _standardised(values: np.ndarray) -> np.ndarray:
    """Each split's MMD² over the root mean square of the other splits' (same bandwidth).

    Under relabelling the unbiased MMD² has mean exactly 0, so the root mean square is its
    null standard deviation. Leaving each split's own value out treats the observed split and
    the permutations alike (the test stays exact) and lets a strong drift stand out unbounded.
    """
    squares = values**2
    others = (squares.sum(axis=-1, keepdims=True) - squares) / (values.shape[-1] - 1)
    scale = np.sqrt(others)
    return np.divide(values, scale, out=np.zeros_like(values), where=scale > 0)


def mmd_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    permutations: int = 200,
    alpha: float = 0.01,
    max_samples: int = 1000,
    bandwidths: Sequence[float] = BANDWIDTHS,
    rng: np.random.Generator,
) -> DriftResult:
    """Test whether ``current`` rows come from the distribution of ``reference`` rows.

    ``reference`` (n, d) and ``current`` (m, d) are float16 or float32 embeddings (a memmap
    works: only the subsample is read for the test, the centroid shift reads every row).
    ``bandwidths`` are the RBF kernel widths as multiples of the median heuristic; ``(1.0,)``
    is the classic single-kernel test. ``rng`` draws the subsamples and the permutations: the
    same generator state gives the same result. ``ValueError`` for fewer than 2 rows a side,
    rows of different or zero dimension, non-finite values, or settings out of range.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if not bandwidths or min(bandwidths) <= 0.0:
        raise ValueError(f"bandwidths must be positive multiples of the median, got {bandwidths}")
    if max_samples < 2:
        raise ValueError(f"max_samples must be at least 2, got {max_samples}")
    # The smallest p-value is 1 / (1 + permutations): below alpha only with enough of them.
    if permutations < 1 or 1.0 / (1 + permutations) >= alpha:
        raise ValueError(
            f"permutations={permutations} cannot give a p-value below alpha={alpha}: "
            f"use more than {1.0 / alpha - 1:g}"
        )
    reference, current = np.asarray(reference), np.asarray(current)
    _check_pair(reference, current, min_rows=2)
    shift = centroid_shift(reference, current)  # also rejects non-finite rows
    x = _subsample(reference, max_samples, rng)
    y = _subsample(current, max_samples, rng)
    n, m = x.shape[0], y.shape[0]
    squared, median = _squared_distances(np.concatenate([x, y]))
    observed = np.concatenate([np.ones(n), np.zeros(m)])
    # Column 0 is the observed split, the others random relabellings of the pooled rows.
    splits = rng.permuted(np.repeat(observed[:, None], permutations + 1, axis=1), axis=0)
    splits[:, 0] = observed
    kernel = np.empty_like(squared)
    values = np.empty((len(bandwidths), permutations + 1))
    for row, factor in enumerate(bandwidths):
        np.multiply(squared, -1.0 / (factor * median), out=kernel)
        np.exp(kernel, out=kernel)
        np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out i == j
        values[row] = _unbiased_mmd2(kernel, splits, n)
    # Every split's statistic is its largest standardised MMD² over the bandwidths: the same
    # rule for all splits, so the permutations are a valid null for the observed one.
    scores = _standardised(values).max(axis=0)
    statistic, null = float(scores[0]), scores[1:]
    exceed = int(np.count_nonzero(null >= statistic))
    p_value = (1 + exceed) / (1 + permutations)
    # The threshold is the null value with as many null values above it as a drifting
    # statistic may have: statistic > threshold exactly when p_value < alpha.
    counts = np.arange(permutations + 1)
    allowed = int(np.count_nonzero((1 + counts) / (1 + permutations) < alpha))
    threshold = float(np.sort(null)[::-1][allowed - 1])
    return DriftResult(
        method=METHOD,
        statistic=statistic,
        threshold=threshold,
        p_value=p_value,
        drift=p_value < alpha,
        centroid_shift=shift,
        reference_size=n,
        current_size=m,
    )
