"""Tuning table lookups, validation, and the autotune command (tiny, slow: interpret mode)."""

from __future__ import annotations

import json

import pytest

from kernels.flash_attention import tuning


def test_lookup_falls_back_to_default_kind_and_head_dim():
    unknown = tuning.get_block_sizes("triton", 96, kind="no such device")
    assert unknown == tuning.BlockSizes(
        **tuning._load_table(tuning.TABLE_PATH)["default"]["triton"]["default"]
    )
    d256 = tuning.get_block_sizes("pallas", 256, kind="no such device")
    assert d256.block_q == 32  # the smaller tiles for D 256 (shared memory)


def test_block_sizes_validate():
    with pytest.raises(ValueError, match="power of two >= 16"):
        tuning.BlockSizes(block_q=48)
    with pytest.raises(ValueError, match="positive int"):
        tuning.BlockSizes(num_warps=0)
    with pytest.raises(ValueError, match="unknown impl 'cuda'"):
        tuning.get_block_sizes("cuda", 64)


@pytest.mark.slow
def test_autotune_smoke_writes_the_table(tmp_path, monkeypatch):
    table = tmp_path / "table.json"
    table.write_text(json.dumps(tuning._load_table(tuning.TABLE_PATH)))
    monkeypatch.setattr(tuning, "TABLE_PATH", str(table))
    tuning.main(["--impl", "pallas", "--head-dims", "32", "--seq-len", "64", "--smoke", "--write"])
    written = json.loads(table.read_text())
    entry = written[tuning.device_kind()]["pallas"]["d32"]
    assert tuning.BlockSizes(**entry) in tuning.candidates(32)[:2]
