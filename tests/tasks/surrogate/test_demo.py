"""`make demo` learns: on held-out trajectories the pretrained AViT beats the same model from
scratch, and scratch beats persistence, by 10% each, one step and over 5 rollout steps."""

import dataclasses

import pytest

MARGIN = 0.9  # each arm at most 90% of the error of the next


@pytest.mark.slow
def test_demo_preset_beats_scratch_and_persistence_by_a_margin(tmp_path):
    from experiments import surrogate_transfer

    base = surrogate_transfer.demo()
    cfg = dataclasses.replace(base, workdir=str(tmp_path / "demo"))
    out = surrogate_transfer.main(cfg)
    arms = {r["arm"]: r for r in out["summary"]}
    assert set(arms) == {"pretrained", "scratch", "persistence"}
    for metric in ("nrmse_1", "nrmse_5"):
        pre, scratch, persist = (
            arms[a][metric][0] for a in ("pretrained", "scratch", "persistence")
        )
        assert pre < MARGIN * scratch, (metric, pre, scratch)
        assert scratch < MARGIN * persist, (metric, scratch, persist)
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "This demo pretrains" in report.splitlines()[2]
