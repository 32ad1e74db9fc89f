"""The benchmark harness runs end to end (tiny, CPU) and writes well-formed JSONL/table/plot."""

from __future__ import annotations

import json

import pytest

from kernels import bench

REQUIRED = {
    "impl",
    "seq_len",
    "head_dim",
    "causal",
    "batch",
    "heads",
    "dtype",
    "device_kind",
    "versions",
    "git_sha",
    "passes",
    "status",
    "time_ms",
    "timer",
    "tflops",
    "frac_of_matmul_peak",
    "peak_bytes",
    "matmul_peak_tflops",
    "mode",
    "time_ms_p20_p80",
    "speedup_vs_xla",
}


def _rows(out):
    return [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_bench_smoke_writes_jsonl_table_and_plot(tmp_path):
    out = tmp_path / "bench"
    # xla last on the command line: it is still timed first, so every row gets its speed-up.
    rc = bench.main(
        [
            "--smoke",
            "--out",
            str(out),
            "--impls",
            "pallas",
            "cudnn",
            "xla",
            "--seq-lens",
            "32",
            "64",
            "--causal",
            "true",
            "--repeats",
            "2",
        ]
    )
    assert rc == 0
    rows = _rows(out)
    ok = [r for r in rows if r["status"] == "ok"]
    # xla, pallas: 2 seq lens x (fwd, bwd, fwd+bwd); cudnn: one "skipped" row per config (no GPU).
    assert len(ok) == 12 and [r["impl"] for r in ok] == ["xla"] * 6 + ["pallas"] * 6
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert {r["impl"] for r in skipped} == {"cudnn"} and all("GPU" in r["reason"] for r in skipped)
    assert all(r["speedup_vs_xla"] is None for r in skipped)
    xla = {bench._key(r): r for r in ok if r["impl"] == "xla"}
    for r in ok:
        assert REQUIRED <= r.keys(), REQUIRED - r.keys()
        assert r["time_ms"] > 0 and r["peak_bytes"] > 0 and r["versions"]["jax"]
        fwd_flops = 4 * r["batch"] * r["heads"] * r["seq_len"] ** 2 * r["head_dim"] * 0.5
        factor = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}[r["passes"]]
        expected = factor * fwd_flops / (r["time_ms"] * 1e-3) / 1e12
        assert r["tflops"] == pytest.approx(expected, rel=1e-9)
        assert r["frac_of_matmul_peak"] == pytest.approx(r["tflops"] / r["matmul_peak_tflops"])
        assert r["batch"] * r["seq_len"] == 256  # smoke: tokens fixed across the sweep
        assert r["dtype"] == "float32"
        p20, p80 = r["time_ms_p20_p80"]
        assert 0 < p20 <= p80
        # Off a GPU the Pallas kernels run in the interpreter, and say so.
        assert r["mode"] == ("interpret" if r["impl"] == "pallas" else "compiled")
        ref = xla[bench._key(r)]["time_ms"]
        assert r["speedup_vs_xla"] == pytest.approx(ref / r["time_ms"], rel=1e-12)
        if r["impl"] == "xla":
            assert r["speedup_vs_xla"] == 1.0
    text = (out / "bench.md").read_text()
    assert "measure the interpreter, not the kernel" in text
    table = text.splitlines()
    header = next(_cells(line) for line in table if line.startswith("| impl |"))
    for col in ("mode", "dtype", "median ms", "p20–p80 ms", "vs xla"):
        assert col in header
    data = [line for line in table if line.startswith("| ") and not line.startswith("| impl |")]
    body = [dict(zip(header, _cells(line))) for line in data]
    assert len(body) == 12 and sum(c["impl"] == "xla" for c in body) == 6
    for cells, r in zip(body, ok):  # the table lists the ok rows in JSONL order
        assert (cells["impl"], cells["pass"], int(cells["seq"])) == (
            r["impl"],
            r["passes"],
            r["seq_len"],
        )
        assert cells["mode"] == r["mode"] and cells["dtype"] == "float32"
        assert cells["vs xla"] == f"{r['speedup_vs_xla']:.2f}"
        if r["impl"] == "xla":
            assert cells["vs xla"] == "1.00"
        else:  # the rounded arithmetic, from the table's own rounded medians
            xla_cells = body[ok.index(xla[bench._key(r)])]
            ratio = float(xla_cells["median ms"]) / float(cells["median ms"])
            assert float(cells["vs xla"]) == pytest.approx(ratio, rel=0.02, abs=0.01)
        lo, hi = (float(x) for x in cells["p20–p80 ms"].split("–"))
        assert lo <= hi
    assert any(line.startswith("- cudnn: RuntimeError: cudnn needs a GPU") for line in table)
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_a_failed_measurement_is_skipped_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """An error while *timing* (an out-of-memory at run time, say) skips that pass only."""
    current = {}
    real_attention_fn, real_time_ms = bench.attention_fn, bench.time_ms

    def attention_fn(impl, causal, *a, **kw):
        current["impl"] = impl
        return real_attention_fn(impl, causal, *a, **kw)

    def time_ms(fn, args, repeats, warmup):
        if current.get("impl") == "reference":
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate " * 9)
        return real_time_ms(fn, args, repeats, warmup)

    monkeypatch.setattr(bench, "attention_fn", attention_fn)
    monkeypatch.setattr(bench, "time_ms", time_ms)
    out = tmp_path / "bench"
    args = ["--smoke", "--out", str(out), "--seq-lens", "32", "--repeats", "1"]
    assert bench.main([*args, "--impls", "reference", "xla"]) == 0
    rows = _rows(out)
    # xla (timed first) measured; reference: every pass skipped with the reason, nothing raised.
    assert [(r["impl"], r["status"]) for r in rows] == [("xla", "ok")] * 3 + [
        ("reference", "skipped")
    ] * 3
    failed = rows[3:]
    assert [r["passes"] for r in failed] == ["fwd", "bwd", "fwd+bwd"]
    for r in failed:
        assert r["reason"].startswith("RuntimeError: RESOURCE_EXHAUSTED: Out of memory")
        assert len(r["reason"]) == 300 and r["speedup_vs_xla"] is None
    table = (out / "bench.md").read_text()
    assert "- reference: RuntimeError: RESOURCE_EXHAUSTED" in table
    assert "S=32 D=32 causal=True fwd+bwd" in table


def test_bench_help_states_the_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "default: 512 1024 2048 4096 8192 16384 (smoke: 32 64)" in text
    assert "default: 64 128 256 (smoke: 32)" in text
    assert "default: false true (smoke: true)" in text
    assert "default: 16384 (smoke: 256)" in text
    assert "default: bfloat16 (smoke: float32)" in text
    assert "default: 20 (smoke: 3)" in text
    assert "default: runs/bench" in text
    assert "default: xla cudnn pallas mosaic triton reference (smoke: xla pallas)" in text


def test_bench_rejects_bad_seq_len(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--smoke", "--seq-lens", "100"])
    assert "not a power of two" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--repeats", "0", "--repeats: 0"),
        ("--tokens", "-1", "--tokens: -1"),
        ("--head-dims", "0", "--head-dims: 0"),
    ],
)
def test_bench_rejects_bad_values_in_one_line(capsys, flag, value, message):
    with pytest.raises(SystemExit) as e:
        bench.main(["--smoke", flag, value])
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("python -m kernels.bench: error: ") and message in last
