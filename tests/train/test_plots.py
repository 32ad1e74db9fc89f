"""Metric curves: eval points visible above the dense training curve, labelled axes."""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from jaxfm.train.plots import metrics_figure, plot_metrics  # noqa: E402


def _records():
    train = [{"step": s, "loss": 1.0 / s} for s in range(1, 201)]
    evals = [{"step": s, "eval/loss": 2.0 / s} for s in (50, 100, 150, 200)]
    return train + evals


def test_eval_curve_has_markers_and_is_drawn_above_the_training_curve():
    fig = metrics_figure(_records(), ["loss", "eval/loss"], title="t")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["eval/loss"].get_marker() == "o" and lines["loss"].get_marker() == "None"
    assert lines["eval/loss"].get_zorder() > lines["loss"].get_zorder()
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "value"
    assert ax.get_yscale() == "log"
    (legend,) = fig.legends  # outside the axes, not over the curves
    assert ax.get_legend() is None and len(legend.get_texts()) == 2
    plt.close(fig)


def test_a_curve_with_values_at_or_below_zero_keeps_a_linear_axis(tmp_path):
    records = [{"step": s, "delta": s - 3.0} for s in range(1, 30)]
    fig = metrics_figure(records, ["delta", "missing"])
    assert fig.axes[0].get_yscale() == "linear" and fig.axes[0].get_ylabel() == "delta"
    plt.close(fig)
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    assert plot_metrics(str(tmp_path), ["delta"]) == str(tmp_path / "metrics.png")
    assert plot_metrics(str(tmp_path), ["missing"]) is None
