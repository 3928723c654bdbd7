"""A 2-D picture of two sets of embeddings: PCA on both together, so they share one map.

The monitor draws the serving index's reference sample against the newly ingested images; the
points go into the report's JSON (``projection``), so they are few and rounded::

    import numpy as np
    from imgsearch.monitor.projection import project_2d

    reference, current = project_2d(index_sample, new_embeddings, rng=np.random.default_rng(0))
    reference[:2]     # [[0.1234, -0.0567], [0.0871, 0.2113]]: at most 500 rows, 4 decimals

The axes are the pooled rows' first two principal components (numpy's SVD; no scikit-learn in the
Lambda image), each signed so that its largest loading is positive: the same input always gives
the same picture, not a mirror image of it.
"""

from __future__ import annotations

import numpy as np

DECIMALS = 4


def project_2d(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    max_points: int = 500,
    rng: np.random.Generator,
) -> tuple[list[list[float]], list[list[float]]]:
    """Both sets' rows (at most ``max_points`` of each, drawn with ``rng``) on the first two
    principal components of the drawn rows pooled, as ``[x, y]`` lists."""
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    sets = [np.asarray(rows, dtype=np.float64) for rows in (reference, current)]
    for name, rows in zip(("reference", "current"), sets, strict=True):
        if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] == 0:
            raise ValueError(f"{name} must be a non-empty 2-D array, got shape {rows.shape}")
        if not np.isfinite(rows).all():
            raise ValueError(f"{name} holds values that are not finite")
    if sets[0].shape[1] != sets[1].shape[1]:
        raise ValueError(f"dimensions differ: {sets[0].shape[1]} and {sets[1].shape[1]}")
    drawn = [_draw(rows, max_points, rng) for rows in sets]
    pooled = np.vstack(drawn)
    mean = pooled.mean(axis=0)
    _, _, components = np.linalg.svd(pooled - mean, full_matrices=False)
    components = components[:2]
    strongest = np.argmax(np.abs(components), axis=1)
    components *= np.sign(components[np.arange(len(components)), strongest])[:, None]
    # One-dimensional embeddings have a single component: their second axis is flat.
    axes = np.zeros((2, pooled.shape[1]))
    axes[: len(components)] = components
    projected = [np.round((rows - mean) @ axes.T, DECIMALS) + 0.0 for rows in drawn]
    return projected[0].tolist(), projected[1].tolist()


def _draw(rows: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_points`` of the rows, without replacement, in their own order."""
    if len(rows) <= max_points:
        return rows
    return rows[np.sort(rng.choice(len(rows), size=max_points, replace=False))]
