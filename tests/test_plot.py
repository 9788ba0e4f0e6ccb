"""``worker.ops.plot``: the summary picture, read back with libpng and checked by colour."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from readers import decode_png
from worker.ops.plot import (
    Panel,
    _median,
    _sorted_unique,
    draw_panels,
    panels_png,
    run_picture,
    summary_png,
)

BLUE_BGR = (180, 119, 31)  # the palette's first colour, Tableau blue


ORANGE_BGR = (14, 127, 255)

Array = np.ndarray[Any, Any]


def near(img: Array, bgr: tuple[int, int, int], tol: int = 40) -> Array:
    """Where the picture shows (nearly: lines are anti-aliased) this colour."""
    diff = np.abs(img.astype(np.int16) - np.array(bgr, np.int16)).max(axis=2)
    out: Array = diff <= tol
    return out


def amber(img: Array) -> Array:
    """Where the first span tint (amber over white: more red than blue) shows. The blue
    lines and their anti-aliased edges have more blue; white, grid and text are grey."""
    out: Array = img[:, :, 2].astype(np.int16) - img[:, :, 0] > 30
    return out


def calibrate(img: Array, bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """A series that is flat but for one spike: (its flat row, first column, last column)."""
    on = near(img, bgr)
    row = int(on.sum(axis=1).argmax())
    cols = np.flatnonzero(on[row])
    return row, int(cols[0]), int(cols[-1])


def spike_series(n: int, spike_at: int) -> list[tuple[float, float]]:
    t = np.linspace(0.0, 10.0, n)
    v = np.full(n, 0.3)
    v[spike_at] = 1.0
    return list(zip(t.tolist(), v.tolist(), strict=True))


@pytest.mark.parametrize("n", [1001, 100_000])
def test_a_spike_is_drawn_at_its_time_even_among_100k_points(n: int) -> None:
    # One sample at 1.0 among n at 0.3: min/max decimation must keep it.
    data = summary_png({"spiky": spike_series(n, n // 2)}, title="spike", plot_height=320)
    img = decode_png(data)
    assert img.shape[1] == 1200
    row, left, right = calibrate(img, BLUE_BGR)
    on = near(img, BLUE_BGR)[: row + 3]
    x = round(left + (right - left) * (n // 2) / (n - 1))
    top = int(np.flatnonzero(on[:, x - 2 : x + 3].any(axis=1))[0])
    # 0.3 -> 1.0 is 70% of the 320 px chart.
    assert abs((row - top) - 0.7 * 319) < 6
    quiet = x - (right - left) // 4
    assert np.flatnonzero(on[:, quiet])[0] >= row - 3


def test_spans_tint_their_columns_and_only_those() -> None:
    n = 1001
    img = decode_png(
        summary_png({"s": spike_series(n, n // 2)}, title="", spans=[(2.0, 4.0, "ev")])
    )
    row, left, right = calibrate(img, BLUE_BGR)
    on = near(img, BLUE_BGR)
    top = int(np.flatnonzero(on[:, (left + right) // 2])[0])
    probe = row - int((row - top) * 0.4 / 0.7)  # at 0.6: no grid line, no series, no text
    tinted = np.flatnonzero(amber(img)[probe, left : right + 1])
    width = right - left
    assert abs(tinted[0] - 0.2 * width) <= 2 and abs(tinted[-1] - 0.4 * width) <= 2
    # Vertical grid lines cross the band; little else in it is left untinted.
    assert len(tinted) >= 0.9 * (tinted[-1] - tinted[0] + 1)


def test_series_get_distinct_colours_and_keep_them_across_panels() -> None:
    t = np.linspace(0, 5, 50).tolist()
    series = {f"label {i}": [(x, 0.05 + 0.065 * i) for x in t] for i in range(14)}
    img = draw_panels([Panel("a", series), Panel("b", {"label 3": series["label 3"]})])
    # Horizontal lines: rows where most pixels are saturated (legend swatches are short).
    px = img.astype(np.int16)
    saturated = px.max(axis=2) - px.min(axis=2) > 60
    rows = np.flatnonzero(saturated.sum(axis=1) > 0.7 * img.shape[1])
    lines = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    assert len(lines) == 15  # 14 in panel a, 1 in panel b
    colour = []
    for group in lines:
        row = group[saturated[group].sum(axis=1).argmax()]
        colour.append(np.median(px[row][saturated[row]], axis=0))
    a, b = colour[:14][::-1], colour[14]  # panel a from the bottom: label 0 first
    for i in range(14):
        for j in range(i + 1, 14):
            assert np.abs(a[i] - a[j]).max() > 25, (i, j)
    np.testing.assert_allclose(b, a[3], atol=2)


def test_given_colours_win_over_the_palette() -> None:
    img = decode_png(
        summary_png({"x": [(0.0, 0.5), (1.0, 0.5)]}, title="", colors={"x": (255, 0, 0)})
    )
    assert near(img, (0, 0, 255), tol=10).sum() > 500 and not near(img, BLUE_BGR, 10).any()


def test_a_line_breaks_where_its_series_has_no_points() -> None:
    t = np.arange(0, 10, 0.04)
    steady = [(x, 0.2) for x in t]
    sparse = [(x, 0.8) for x in t if x < 2 or x > 8]  # top-1 only at the start and the end
    img = decode_png(summary_png({"steady": steady, "sparse": sparse}, title=""))
    row, left, right = calibrate(img, BLUE_BGR)
    orange = near(img, ORANGE_BGR)[: row + 3]
    cols = np.flatnonzero(orange.any(axis=0))
    width = right - left
    assert cols.min() <= left + 2 and cols.max() >= right - 2
    inside = cols[(cols > left + 0.25 * width) & (cols < right - 0.25 * width)]
    assert inside.size == 0


def test_run_picture_puts_zone_spans_in_their_zone_and_leaves_unseen_labels_out() -> None:
    t = np.arange(0, 10, 0.5).tolist()
    series = {"never": [(x, 0.0) for x in t], "seen": [(x, 0.4) for x in t]}
    zones = {"door": {"seen": [(x, 0.6) for x in t]}}
    data = run_picture(series, zones, [(2.0, 6.0, "door:person")], title="clip.mp4")
    img = decode_png(data)
    # "never" is out of the legend, so "seen" takes the palette's first colour.
    assert near(img, BLUE_BGR).sum() > 1000 and not near(img, ORANGE_BGR).any()
    tinted = amber(img)
    half = img.shape[0] // 2
    assert not tinted[:half].any() and tinted[half:].sum() > 1000
    assert decode_png(data).shape[0] > decode_png(summary_png(series, title="x")).shape[0]


@pytest.mark.parametrize(
    "series",
    [
        {},
        {"empty": []},
        {"one": [(3.0, 0.4)]},
        {"same time": [(2.0, 0.1), (2.0, 0.9), (2.0, 0.5)]},
        {"out of range": [(-5.0, -1.0), (0.0, 2.0), (5.0, 0.5)]},
        {"not finite": [(0.0, float("nan")), (1.0, 0.5), (float("inf"), 0.5), (2.0, 0.2)]},
        {"n" * 5000: [(0.0, 0.1), (1.0, 0.2)], "caf\u00e9 \u4eba": [(0.0, 0.3), (1.0, 0.3)]},
        {f"s{i}": [(0.0, i / 40)] for i in range(40)},
        {"long": [(i * 0.04, 0.5) for i in range(3 * 3600 * 25 // 10)]},
    ],
)
def test_edge_cases_make_a_picture(series: dict[str, list[tuple[float, float]]]) -> None:
    spans = [(4.0, 1.0, "reversed"), (2.0, 2.0, "instant"), (0.0, 1e9, "x" * 300)]
    for s in ((), spans):
        data = summary_png(series, title="t" * 400, spans=s, width=240, plot_height=60)
        assert decode_png(data).shape[1] == 240
        assert panels_png([Panel("p", series, s)], title="x").startswith(b"\x89PNG")


def test_picture_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        panels_png([])
    with pytest.raises(ValueError):
        summary_png({}, title="", width=100)


def test_unique_and_median_are_numpy_s() -> None:
    # The picture's own np.unique and np.median (which import numpy.ma): the same values.
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 3, 10, 101, 1000):
        for a in (rng.integers(0, 40, n), rng.integers(0, 40, n) * 0.04):
            assert np.array_equal(_sorted_unique(a), np.unique(a))
            if n:
                assert _median(a) == float(np.median(a))
