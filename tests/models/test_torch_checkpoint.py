"""The torch-free reader of torch.save files: values, views and dtypes of files in torch's zip
format (written by the test-only ``torch_zip_writer``), refusal of foreign globals, malformed
files; and, with real torch, both directions against torch.save / torch.load."""

import collections
import importlib.util
import io
import os
import pickle
import subprocess
import sys
import zipfile

import ml_dtypes
import numpy as np
import pytest

from jaxfm.models.torch_checkpoint import (
    TorchCheckpointError,
    UnsafeCheckpointError,
    read_torch_checkpoint,
)

from .torch_zip_writer import View, write_torch_zip


def _sample():
    base = np.arange(30, dtype=np.float32)
    return base, {
        "iters": 40,
        "epoch": 2,
        "model_state": collections.OrderedDict(
            [
                ("module.w", np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)),
                ("module.t", View(base, 2, (4, 5), (1, 6))),  # transposed, offset view
                ("module.row", View(base, 12, (6,), (1,))),  # shares the storage
                ("module.f64", np.array([[1.5, -2.25]], np.float64)),
                ("module.bf16", np.array([1.0, -0.5, 3.0], ml_dtypes.bfloat16)),
                ("module.i64", np.arange(5, dtype=np.int64)),
                ("module.mask", np.array([True, False])),
                ("module.scalar", np.array(2.5, np.float32)),
            ]
        ),
        "optimizer_state_dict": {"state": {0: {"step": 3}}, "param_groups": [{"lr": 0.1}]},
    }


def test_reads_tensors_views_dtypes_and_plain_values(tmp_path):
    base, obj = _sample()
    path = tmp_path / "ckpt.tar"
    write_torch_zip(path, obj)
    back = read_torch_checkpoint(path)
    assert back["iters"] == 40 and back["optimizer_state_dict"]["param_groups"] == [{"lr": 0.1}]
    sd = back["model_state"]
    assert isinstance(sd, collections.OrderedDict) and list(sd) == list(obj["model_state"])
    for k, v in obj["model_state"].items():
        want = v.value() if isinstance(v, View) else v
        assert sd[k].dtype == want.dtype and sd[k].shape == want.shape, k
        np.testing.assert_array_equal(sd[k], want, err_msg=k)
    assert sd["module.t"][1, 2] == base[2 + 1 * 1 + 2 * 6]  # offset + i * stride_i
    assert sd["module.t"].flags.c_contiguous and sd["module.t"].flags.owndata
    assert "torch" not in sys.modules or importlib.util.find_spec("torch")  # writer cleans up


def _zip_with_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_foreign_globals_are_refused_with_file_and_name(tmp_path):
    path = tmp_path / "evil.pt"
    _zip_with_pickle(path, pickle.dumps({"model_state": _Evil()}, protocol=2))
    with pytest.raises(
        UnsafeCheckpointError, match=r"evil\.pt: refusing .*global (posix|os)\.system"
    ):
        read_torch_checkpoint(path)
    path = tmp_path / "class.pt"
    _zip_with_pickle(path, pickle.dumps(io.BytesIO, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match=r"class\.pt: refusing .*_io\.BytesIO"):
        read_torch_checkpoint(path)


class _TouchMarker:
    """Pickles as a call of os.system that would create ``marker``: unpickling runs it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["payload.pt", "payload.pth"])
def test_pickled_code_is_refused_and_never_runs(tmp_path, name):
    """A checkpoint whose data.pkl calls os.system is refused before the call happens."""
    marker = tmp_path / "executed"
    payload = pickle.dumps({"state_dict": {"w": _TouchMarker(marker)}}, protocol=2)
    pickle.loads(payload)  # control: the payload does run when unpickled unrestricted
    assert marker.exists()
    marker.unlink()
    path = tmp_path / name
    _zip_with_pickle(path, payload)
    with pytest.raises(UnsafeCheckpointError) as err:
        read_torch_checkpoint(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: refusing to unpickle global")
    assert "system" in msg
    assert not marker.exists()


def test_corrupt_zip_members_raise_a_one_line_error_naming_the_file(tmp_path):
    """A damaged member (CRC mismatch) used to escape as zipfile.BadZipFile without the path."""
    good = tmp_path / "good.pt"
    write_torch_zip(good, {"w": np.ones((2, 3), np.float32)})
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = z.getinfo(next(n for n in z.namelist() if n.endswith("data.pkl")))
    raw[info.header_offset + 30 + len(info.filename) + 2] ^= 0xFF  # a byte of the pickle
    bad = tmp_path / "crc.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(TorchCheckpointError, match=r"crc\.pt: corrupt zip archive \(Bad CRC-32"):
        read_torch_checkpoint(bad)


def test_malformed_files_raise_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        read_torch_checkpoint(tmp_path / "nope.pt")
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(TorchCheckpointError, match=r"legacy\.pt: not a torch.save zip"):
        read_torch_checkpoint(legacy)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("x/other", b"")
    with pytest.raises(TorchCheckpointError, match="one PREFIX/data.pkl entry, found 0"):
        read_torch_checkpoint(empty)
    good = tmp_path / "good.pt"
    write_torch_zip(good, {"w": np.ones((2, 3), np.float32)})
    short = tmp_path / "short.pt"  # a storage with fewer bytes than its numel says
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(short, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:-4] if name.endswith("data/0") else data)
    with pytest.raises(TorchCheckpointError, match=r"short\.pt: storage 0 holds 20 bytes"):
        read_torch_checkpoint(short)
    outside = tmp_path / "outside.pt"  # a view reaching past its storage
    write_torch_zip(outside, {"w": View(np.zeros(6, np.float32), 2, (2, 3), (3, 1))})
    with pytest.raises(TorchCheckpointError, match=r"outside\.pt: storage 0 has 6 elements"):
        read_torch_checkpoint(outside)
    garbage = tmp_path / "garbage.pt"
    _zip_with_pickle(garbage, b"\x80\x02not a pickle")
    with pytest.raises(TorchCheckpointError, match=r"garbage\.pt: malformed data\.pkl"):
        read_torch_checkpoint(garbage)


def _torch_python() -> str:
    explicit = os.environ.get("JAXFM_TORCH_PYTHON", "")
    if explicit:
        return explicit
    return sys.executable if importlib.util.find_spec("torch") else ""


TORCH_PYTHON = _torch_python()


@pytest.mark.torch
@pytest.mark.skipif(
    not TORCH_PYTHON, reason="set JAXFM_TORCH_PYTHON to a python with torch (make test-torch)"
)
def test_reader_and_writer_agree_with_real_torch(tmp_path):
    """torch.load reads the test writer's file (so the fast tests above test torch's format),
    and the reader reads a torch.save file in MPP's checkpoint layout exactly."""
    _, obj = _sample()
    ours = tmp_path / "ours.pt"
    write_torch_zip(ours, obj)
    script = os.path.join(os.path.dirname(__file__), "torch_save_files.py")
    proc = subprocess.run(
        [TORCH_PYTHON, script, str(ours), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = np.load(tmp_path / "ours_loaded.npz")
    for k, v in obj["model_state"].items():
        want = v.value() if isinstance(v, View) else v
        np.testing.assert_array_equal(loaded[f"/model_state/{k}"], want.astype(np.float32), k)
    real = read_torch_checkpoint(tmp_path / "real.pt")
    assert real["iters"] == 20 and real["epoch"] == 1
    assert real["optimizer_state_dict"]["param_groups"][0]["betas"] == (0.9, 0.99)
    values = np.load(tmp_path / "real_values.npz")
    assert len(values.files) == len(real["model_state"])
    for k in values.files:
        got = real["model_state"][k.split("/", 1)[1]]
        assert got.shape == values[k].shape, k
        np.testing.assert_array_equal(got.astype(values[k].dtype), values[k], err_msg=k)
