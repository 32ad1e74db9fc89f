"""atomic_path: the file is replaced whole on success and left as it was on failure."""

import os

import pytest

from jaxfm.atomic import atomic_path


def test_success_replaces_and_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "rollout.json"
    path.write_text("old")
    with atomic_path(path) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and tmp != str(path)
        open(tmp, "w").write("new")
        assert path.read_text() == "old"  # not visible until the block ends
    assert path.read_text() == "new"
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        open(tmp, "w").write("half")
        raise KeyboardInterrupt  # a signal in the middle of the write
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["rollout.json"]
