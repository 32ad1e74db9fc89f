"""Rollout plots: shared colour scales per row, colourbars with units, labelled axes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxfm.tasks.surrogate.plots import (  # noqa: E402
    AS_STORED,
    error_vs_step_figure,
    plot_error_vs_step,
    plot_rollout,
    rollout_figure,
)


def _trajectory(steps=6, h=8, w=6):
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(steps, h, w, 2)).astype(np.float32)
    truth[..., 1] *= 100.0  # a second field on another scale
    pred = truth + 0.1 * rng.normal(size=truth.shape).astype(np.float32)
    pred[-1, 0, 0, 0] = 50.0  # one prediction far outside the truth's range
    return truth, pred


def test_rollout_rows_share_a_colour_scale_and_have_labelled_colourbars():
    truth, pred = _trajectory()
    fig = rollout_figure(
        truth, pred, ("density", "pressure"), fields=(0, 1), n_cols=3, units={"pressure": "Pa"}
    )
    image_axes = [ax for ax in fig.axes if ax.images]
    grid = np.array(image_axes).reshape(6, 3)  # (truth, prediction, error) x 2 fields
    clims = [[ax.images[0].get_clim() for ax in row] for row in grid]
    for k, c in enumerate((0, 1)):
        shown = truth[[0, 2, 5], ..., c]
        truth_row, pred_row, err_row = clims[3 * k : 3 * k + 3]
        assert set(truth_row) == set(pred_row) == {(shown.min(), shown.max())}
        assert len(set(err_row)) == 1 and err_row[0][0] == 0 and err_row[0] != truth_row[0]
    bars = [ax for ax in fig.axes if not ax.images]
    labels = [ax.get_ylabel() for ax in bars]
    assert len(bars) == 6
    assert labels[:3] == [f"density\n{AS_STORED}"] * 2 + [f"|error|\n{AS_STORED}"]
    assert labels[3:] == ["pressure\nPa", "pressure\nPa", "|error|\nPa"]
    assert grid[-1, 0].get_xlabel() == "x (grid points)"
    assert grid[0, 0].get_ylabel() == "density truth\ny (grid points)"
    assert [ax.get_title() for ax in grid[0]] == ["step 1", "step 3", "step 6"]
    # x runs to the right: an (H, W) = (x, y) image is drawn transposed, y up
    assert grid[0, 0].images[0].get_array().shape == (6, 8)
    assert grid[0, 0].images[0].origin == "lower"
    assert fig.get_suptitle() == "density, pressure, rollout steps 1-6 of 6"
    plt.close(fig)


def test_rollout_plot_titles_the_system_and_saves(tmp_path):
    truth, pred = _trajectory()
    fig = rollout_figure(truth, pred, ("rho", "p"), title="euler (valid)", units="normalised")
    assert fig.get_suptitle() == "euler (valid): rho, rollout steps 1-6 of 6"
    assert [ax.get_ylabel() for ax in fig.axes if not ax.images][0] == "rho\nnormalised"
    plt.close(fig)
    path = plot_rollout(str(tmp_path / "r" / "rollout.png"), truth, pred, ("rho", "p"))
    assert path.endswith("rollout.png") and (tmp_path / "r" / "rollout.png").stat().st_size


def _res(model, persist):
    return {
        "model": {m: {"per_step": model} for m in ("nrmse", "vrmse")},
        "persistence": {m: {"per_step": persist} for m in ("nrmse", "vrmse")},
    }


@pytest.mark.parametrize(
    "model, persist, scale",
    [([0.01, 0.1, 0.5], [0.2, 0.3, 0.4], "log"), ([0.1, 0.12, 0.15], [0.2, 0.3, 0.4], "linear")],
)
def test_error_vs_step_axes_and_legend_outside_the_panels(model, persist, scale, tmp_path):
    fig = error_vs_step_figure(_res(model, persist), title="euler")
    a, b = fig.axes
    assert fig.get_suptitle() == "euler: error vs rollout step"
    assert (a.get_xlabel(), a.get_ylabel(), b.get_ylabel()) == ("rollout step", "NRMSE", "VRMSE")
    assert a.get_yscale() == b.get_yscale() == scale
    assert a.get_legend() is None and b.get_legend() is None
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["model", "persistence"]
    plt.close(fig)
    assert plot_error_vs_step(str(tmp_path / "e.png"), _res(model, persist)).endswith("e.png")
