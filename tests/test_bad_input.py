"""Bad input through the real command line: one line on stderr naming the key, value or file,
exit status 2, no traceback (unless --debug), and nothing already in the workdir touched."""

import hashlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "experiments.surrogate_pretrain", "smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT, **(env or {})},
    )


def _errors(stderr: str) -> list[str]:
    """stderr lines that are not third-party log warnings (absl's, from Orbax; Python's)."""
    return [
        ln
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith("WARNING:") and "Warning" not in ln
    ]


def _digest(root) -> dict[str, str]:
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


CASES = [
    (["--train.steps", "-5"], "train.steps"),
    (["--train.steps", "0"], "train.steps"),
    (["--train.batch_size", "0"], "train.batch_size"),
    (["--train.log_every", "0"], "train.log_every"),
    (["--train.grad_accum", "0"], "train.grad_accum"),
    (["--train.lr", "0"], "train.lr"),
    (["--ckpt.every", "-1"], "ckpt.every"),
    (["--model.avit.heads", "5"], "model.avit.heads"),
    (["--data.resolution", "30"], "data.resolution"),
    (["--data.time_strides", "0"], "data.time_strides"),
    (["--train.steps"], "--train.steps needs a value"),
    (["--train.stepz", "3"], "train.steps"),
    (["--data.paths", "{bad_h5}"], "bad.h5"),
    (["--data.paths", "{missing}"], "missing.h5"),
    (["--data.cache_dir", "/proc/no/cache"], "data.cache_dir"),
    (["--config_json_broken"], "config.json is not valid JSON"),
    (["--workdir", "{bad_h5}"], "bad.h5 is a file, not a directory"),
]


@pytest.mark.parametrize("args,named", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_the_workdir_untouched(tmp_path, args, named):
    work = tmp_path / "run"
    (work / "checkpoints" / "5").mkdir(parents=True)
    (work / "checkpoints" / "5" / "state.bin").write_bytes(os.urandom(64))
    (work / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')
    (tmp_path / "bad.h5").write_text("not an HDF5 file")
    if args == ["--config_json_broken"]:  # a hand-edited config.json of a run to resume
        (work / "config.json").write_text('{"workdir": "run", broken')
        args = []
    before = _digest(work)
    subs = {"bad_h5": str(tmp_path / "bad.h5"), "missing": str(tmp_path / "missing.h5")}
    res = _run("--workdir", str(work), *(a.format(**subs) for a in args))
    lines = _errors(res.stderr)
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and "error:" in lines[0], res.stderr
    assert named in lines[0] and "Traceback" not in res.stderr
    assert _digest(work) == before


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "bad.h5").write_text("not an HDF5 file")
    args = ["--workdir", str(tmp_path / "run"), "--data.paths", str(tmp_path / "bad.h5")]
    res = _run(*args, "--debug")
    assert res.returncode != 0 and "Traceback" in res.stderr
    res = _run(*args, env={"JAXFM_DEBUG": "1"})
    assert res.returncode != 0 and "Traceback" in res.stderr
    res = _run(*args)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_run_cli_exit_codes_and_one_line(capsys):
    """Unit level: bad input 2, another fault 1 with its type, SystemExit passes unchanged."""
    import dataclasses

    from jaxfm.config import run_cli

    @dataclasses.dataclass(frozen=True)
    class C:
        x: int = 1

    presets = {"p": C}

    def fail(exc):
        def main(cfg):
            raise exc

        return main

    for exc, code in ((ValueError("bad\nvalue"), 2), (RuntimeError("boom"), 1)):
        with pytest.raises(SystemExit) as e:
            run_cli(fail(exc), C, presets, ["p"])
        assert e.value.code == code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")
    assert "RuntimeError: boom" in err[0]
    with pytest.raises(SystemExit) as e:
        run_cli(fail(SystemExit(143)), C, presets, ["p"])
    assert e.value.code == 143
    with pytest.raises(RuntimeError):
        run_cli(fail(RuntimeError("x")), C, presets, ["p", "--debug"])
    assert run_cli(lambda cfg: cfg.x, C, presets, ["p", "--x", "4"]) == 4


def test_generator_param_of_the_wrong_type_names_it(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "jaxfm.data.generate",
        "navier_stokes",
        "--param",
        "frame_dt=abc",
        "--out",
        str(tmp_path / "out"),
        "--n-traj",
        "1",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    lines = _errors(res.stderr)
    assert res.returncode != 0 and len(lines) == 1, res.stderr
    assert "frame_dt='abc' is not a number" in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()
