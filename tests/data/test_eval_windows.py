"""Eval windows of several systems: whole split or an equal, evenly spread share of each."""

import numpy as np
import pytest

from jaxfm.data.eval_windows import StratifiedWindows, spread_indices
from jaxfm.data.windows import WindowSource
from tests.data.fixtures import random_set


def _sources():
    a = WindowSource(
        random_set(
            n_traj=4, n_steps=12, system="shallow_water", fields=("h", "velocity_x", "velocity_y")
        ),
        4,
        1,
    )
    b = WindowSource(
        random_set(
            n_traj=3, n_steps=10, system="gray_scott", fields=("activator", "inhibitor"), seed=1
        ),
        4,
        1,
    )
    return a, b  # 4 x 8 = 32 and 3 x 6 = 18 windows


def test_whole_split_is_every_window_once():
    ev = StratifiedWindows(_sources(), pad=4)
    assert len(ev) == 50 and ev.counts == {"shallow_water": 32, "gray_scott": 18}
    keys = {(int(ev[i]["system"]), int(ev[i]["traj"]), int(ev[i]["start"])) for i in range(50)}
    assert len(keys) == 50
    assert ev.describe() == "2 systems, 50 windows (shallow_water 32, gray_scott 18)"


def test_a_cap_takes_the_same_number_of_each_system_spread_over_trajectories_and_starts():
    ev = StratifiedWindows(_sources(), pad=4).limit(16)  # what eval_batches=2 x batch 8 asks
    assert ev.counts == {"shallow_water": 8, "gray_scott": 8}
    assert ev.describe() == "2 systems x 8 windows = 16 windows"
    rows = [ev[i] for i in range(len(ev))]
    sw = [(int(r["traj"]), int(r["start"])) for r in rows if int(r["system"]) == 0]
    assert sorted({t for t, _ in sw}) == [0, 1, 2, 3]  # every trajectory, not the first
    assert sorted({s for _, s in sw}) == [2, 6]  # two starts of 8, at the slice midpoints
    gs = [int(r["traj"]) for r in rows if int(r["system"]) != 0]
    assert sorted(set(gs)) == [0, 1, 2]
    # padded to one width: field ids -1 beyond a system's own fields
    assert all(r["x"].shape[-1] == 4 for r in rows)
    assert list(rows[-1]["field_ids"][2:]) == [-1, -1]


def test_spread_indices_and_bad_input():
    assert spread_indices(10, 0).tolist() == list(range(10))
    assert spread_indices(10, 20).tolist() == list(range(10))
    assert spread_indices(12, 3).tolist() == [2, 6, 10]
    assert len(np.unique(spread_indices(1000, 37))) == 37
    with pytest.raises(ValueError, match="per_system"):
        StratifiedWindows(_sources(), per_system=-1)
    with pytest.raises(ValueError, match="at least one source"):
        StratifiedWindows([])
    with pytest.raises(IndexError, match="out of range"):
        StratifiedWindows(_sources())[50]
