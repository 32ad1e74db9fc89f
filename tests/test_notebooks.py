"""Every notebook (jupytext percent-format ``notebooks/*.py``) runs end to end in smoke mode.

Each one is converted to .ipynb and executed by a real Jupyter kernel (nbclient), so what
runs here is what a researcher runs; no outputs are committed.
"""

import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.py")))
#: Over a minute of compilation each on 2 cores: executed by ``make test-slow``. Their library
#: code has its own fast tests (surrogate pipeline, trunk mixers).
SLOW = {"backbones.py", "surrogate.py"}


def _params():
    for p in NOTEBOOKS:
        name = os.path.basename(p)
        yield pytest.param(p, id=name, marks=[pytest.mark.slow] if name in SLOW else [])


@pytest.mark.notebook
@pytest.mark.parametrize("path", _params())
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    import jupytext
    from nbclient import NotebookClient

    monkeypatch.setenv("JAXFM_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = jupytext.read(path)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors


def test_there_is_a_quickstart_notebook():
    assert any(p.endswith("quickstart.py") for p in NOTEBOOKS)
