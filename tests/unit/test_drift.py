"""The embedding-drift detectors: MMD with a permutation threshold, and the centroid shift."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from imgsearch_devkit.demo.photos import jpeg, photo_jpegs, photographs
from imgsearch_devkit.demo.scenes import generate

from imgsearch.model import ClipModel, embed_images
from imgsearch.monitor.drift import (
    DriftResult,
    _squared_distances,
    _unbiased_mmd2,
    centroid_shift,
    mmd_test,
)

DIM = 32


def cone(rng: np.random.Generator, rows: int, centre: np.ndarray, spread: float = 0.6):
    """Unit vectors scattered around ``centre``, as embeddings of one kind of content are."""
    points = centre + spread * rng.normal(size=(rows, centre.size)) / np.sqrt(centre.size)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def direction(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM)
    return vector / np.linalg.norm(vector)


CENTRE, ELSEWHERE = direction(1), direction(2)


def direct_unbiased_mmd2(x: np.ndarray, y: np.ndarray, factor: float) -> float:
    """The textbook double sums, the width ``factor`` x the pooled median squared distance."""
    pooled = np.concatenate([x, y]).astype(np.float64)
    squared = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(axis=-1)
    width = factor * np.median(squared[np.triu_indices(len(pooled), 1)])
    kernel = np.exp(-squared / width)
    n, m = len(x), len(y)
    xx, yy, xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return float(
        (xx.sum() - np.trace(xx)) / (n * (n - 1))
        + (yy.sum() - np.trace(yy)) / (m * (m - 1))
        - 2 * xy.mean()
    )


def test_the_statistic_is_the_unbiased_mmd2_with_the_median_heuristic() -> None:
    rng = np.random.default_rng(3)
    x, y = cone(rng, 40, CENTRE), cone(rng, 25, ELSEWHERE)
    squared, median = _squared_distances(np.concatenate([x, y]).astype(np.float64))
    for factor in (1.0, 0.25):
        kernel = np.exp(-squared / (factor * median))
        np.fill_diagonal(kernel, 0.0)
        split = np.concatenate([np.ones(40), np.zeros(25)])[:, None]
        (value,) = _unbiased_mmd2(kernel, split, 40)
        assert value == pytest.approx(direct_unbiased_mmd2(x, y, factor), rel=1e-9)


def test_same_distribution_windows_are_rarely_flagged() -> None:
    results = [
        mmd_test(
            cone(np.random.default_rng(100 + trial), 200, CENTRE),
            cone(np.random.default_rng(200 + trial), 100, CENTRE),
            alpha=0.05,
            rng=np.random.default_rng(trial),
        )
        for trial in range(40)
    ]
    flagged = sum(r.drift for r in results)
    assert flagged <= 4  # 2 expected at alpha 0.05; the seeds are fixed, so this cannot flake
    p_values = np.array([r.p_value for r in results])
    assert 0.3 < p_values.mean() < 0.7  # about uniform under the null
    assert 0 < np.median([r.statistic for r in results]) < 2  # in null standard deviations
    assert all(r.drift == (r.statistic > r.threshold) for r in results)


def test_a_shifted_distribution_is_flagged() -> None:
    rng = np.random.default_rng(5)
    reference = cone(rng, 300, CENTRE)
    moved = cone(rng, 150, (CENTRE + 0.5 * ELSEWHERE) / np.linalg.norm(CENTRE + 0.5 * ELSEWHERE))
    result = mmd_test(reference, moved, rng=np.random.default_rng(0))
    assert result.drift
    assert result.statistic > result.threshold
    assert result.p_value == pytest.approx(1 / 201)  # no relabelling comes close
    assert result.centroid_shift > 0.05


def test_a_share_of_new_content_is_flagged() -> None:
    """10 % of the window from elsewhere, the rest as before."""
    rng = np.random.default_rng(6)
    reference = cone(rng, 400, CENTRE)
    window = np.concatenate([cone(rng, 135, CENTRE), cone(rng, 15, ELSEWHERE)])
    result = mmd_test(reference, window, rng=np.random.default_rng(0))
    assert result.drift
    assert result.p_value < 0.01


def test_p_value_range_and_threshold_agree_with_the_flag() -> None:
    rng = np.random.default_rng(8)
    for permutations in (99, 200):
        result = mmd_test(
            cone(rng, 60, CENTRE),
            cone(rng, 60, CENTRE),
            permutations=permutations,
            alpha=0.05,
            rng=np.random.default_rng(1),
        )
        assert 1 / (1 + permutations) <= result.p_value <= 1
        assert result.drift == (result.p_value < 0.05) == (result.statistic > result.threshold)


def test_the_same_generator_state_gives_the_same_result() -> None:
    rng = np.random.default_rng(9)
    x, y = cone(rng, 80, CENTRE), cone(rng, 70, CENTRE)
    assert mmd_test(x, y, rng=np.random.default_rng(4)) == mmd_test(
        x, y, rng=np.random.default_rng(4)
    )


def test_subsampling_bounds_the_sizes_and_the_centroid_uses_every_row() -> None:
    rng = np.random.default_rng(10)
    reference, current = cone(rng, 1500, CENTRE), cone(rng, 120, CENTRE)
    result = mmd_test(reference, current, max_samples=500, rng=np.random.default_rng(0))
    assert (result.reference_size, result.current_size) == (500, 120)
    assert result.centroid_shift == centroid_shift(reference, current)


def test_float16_rows_give_the_float32_answer() -> None:
    rng = np.random.default_rng(11)
    x, y = cone(rng, 100, CENTRE), cone(rng, 100, ELSEWHERE)
    half = mmd_test(x.astype(np.float16), y.astype(np.float16), rng=np.random.default_rng(0))
    full = mmd_test(x, y, rng=np.random.default_rng(0))
    assert half.drift and full.drift
    assert half.statistic == pytest.approx(full.statistic, rel=1e-2)


def test_as_dict_is_the_reports_drift_shape() -> None:
    rng = np.random.default_rng(12)
    result = mmd_test(cone(rng, 30, CENTRE), cone(rng, 30, CENTRE), rng=rng)
    figures = json.loads(json.dumps(result.as_dict()))
    assert figures == {
        "method": "mmd",
        "statistic": result.statistic,
        "threshold": result.threshold,
        "p_value": result.p_value,
        "drift": result.drift,
        "centroid_shift": result.centroid_shift,
        "reference_size": 30,
        "current_size": 30,
    }
    assert isinstance(result, DriftResult)


def test_centroid_shift_is_one_minus_the_cosine_of_the_means() -> None:
    x = np.array([[1.0, 0.0], [1.0, 0.2], [1.0, -0.2]], dtype=np.float32)
    assert centroid_shift(x, x) == pytest.approx(0.0, abs=1e-12)
    assert centroid_shift(x, -x) == pytest.approx(2.0)
    assert centroid_shift(x, np.array([[0.0, 1.0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="zero vector"):
        centroid_shift(x, np.array([[0.0, 1.0], [0.0, -1.0]]))


@pytest.mark.parametrize(
    ("reference", "current", "message"),
    [
        (np.zeros((0, DIM)), np.ones((5, DIM)), "at least 2 rows, got 0"),
        (np.ones((5, DIM)), np.ones((1, DIM)), "current needs at least 2 rows"),
        (np.ones((5, DIM)), np.ones((5, DIM + 1)), "dimension mismatch"),
        (np.ones(DIM), np.ones((5, DIM)), "2-D array"),
        (np.ones((5, 0)), np.ones((5, 0)), "dimension 0"),
        (np.full((5, DIM), np.nan), np.ones((5, DIM)), "non-finite"),
    ],
)
def test_bad_inputs_are_refused(reference, current, message) -> None:
    with pytest.raises(ValueError, match=message):
        mmd_test(reference, current, rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"permutations": 50}, "cannot give a p-value below"),
        ({"max_samples": 1}, "max_samples"),
        ({"bandwidths": ()}, "bandwidths"),
        ({"bandwidths": (1.0, 0.0)}, "bandwidths"),
    ],
)
def test_bad_settings_are_refused(settings, message) -> None:
    rows = cone(np.random.default_rng(0), 10, CENTRE)
    with pytest.raises(ValueError, match=message):
        mmd_test(rows, rows, rng=np.random.default_rng(0), **settings)


def test_photographs_among_demo_scenes_are_flagged_and_more_scenes_are_not(
    demo_bundle: Path,
) -> None:
    """The production embeddings: JPEGs through the demo model, stored as float16."""
    model = ClipModel.load(demo_bundle)

    def vectors(blobs: list[bytes]) -> np.ndarray:
        return np.stack(embed_images(model, blobs)).astype(np.float16)

    def scenes(count: int, seed: int) -> np.ndarray:
        return vectors([jpeg(image) for image, _ in generate(count, seed, balanced=False)])

    reference = scenes(300, 11)
    more_scenes = mmd_test(reference, scenes(100, 12), rng=np.random.default_rng(0))
    photos = vectors(photo_jpegs(photographs(), 24, seed=14))
    with_photos = mmd_test(
        reference, np.concatenate([scenes(76, 13), photos]), rng=np.random.default_rng(0)
    )
    assert not more_scenes.drift
    assert more_scenes.p_value > 0.1
    assert with_photos.drift
    assert with_photos.p_value == pytest.approx(1 / 201)  # above every relabelling
