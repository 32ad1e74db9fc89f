"""Mesh construction, rule tables and multi-host detection."""

import jax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxfm.nn.params import partitioned
from jaxfm.parallel import RULES, initialize, logical_to_spec, make_mesh, state_shardings
from jaxfm.parallel.distributed import detect
from jaxfm.parallel.mesh import mesh_shape
from jaxfm.parallel.options import ParallelConfig


def test_mesh_shape_fills_one_axis():
    assert mesh_shape(ParallelConfig(), 8) == (8, 1, 1, 1)
    assert mesh_shape(ParallelConfig(data=2, fsdp=-1), 8) == (2, 4, 1, 1)
    assert mesh_shape(ParallelConfig(data=-1, expert=4), 8) == (2, 1, 1, 4)
    with pytest.raises(ValueError, match="at most one mesh axis may be -1"):
        mesh_shape(ParallelConfig(data=-1, fsdp=-1), 8)
    with pytest.raises(ValueError, match="does not divide 8 devices"):
        mesh_shape(ParallelConfig(data=3), 8)
    with pytest.raises(ValueError, match="has 4 devices, but 8 are available"):
        mesh_shape(ParallelConfig(data=4), 8)


def test_mesh_axes_and_sizes():
    mesh = make_mesh(ParallelConfig(data=2, fsdp=4))
    assert mesh.axis_names == ("data", "fsdp", "tensor", "expert")
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1, "expert": 1}


def test_rule_tables_map_logical_names():
    mesh = make_mesh(ParallelConfig(data=1, fsdp=4, expert=2))
    spec = lambda names, shape, s: logical_to_spec(
        names,
        shape,
        mesh,
        RULES[s],  # noqa: E731
        fsdp_fallback=s != "dp",
    )
    assert spec(("embed", "mlp"), (64, 256), "dp") == P(None, None)
    assert spec(("embed", "mlp"), (64, 256), "fsdp") == P("fsdp", None)
    assert spec(("expert", "embed", "mlp"), (4, 64, 256), "fsdp_ep") == P("expert", "fsdp", None)
    # an indivisible named dim is replicated; the big array still gets split (fallback)
    assert spec(("embed", "mlp"), (6, 256), "fsdp") == P(None, "fsdp")
    # unnamed: replicated under dp, largest divisible dim under fsdp; small stays whole
    assert spec(None, (64, 256), "dp") == P()
    assert spec(None, (64, 256), "fsdp") == P(None, "fsdp")
    assert spec(None, (8,), "fsdp") == P()
    with pytest.raises(ValueError, match="unknown logical axis 'embd'"):
        spec(("embd",), (64,), "fsdp")


def test_state_shardings_follow_the_annotations():
    model = nnx.Linear(
        64,
        32,
        rngs=nnx.Rngs(0),
        kernel_init=partitioned(nnx.initializers.lecun_normal(), ("embed", "mlp")),
    )
    mesh = make_mesh(ParallelConfig(data=1, fsdp=8))
    sh = state_shardings(nnx.state(model, nnx.Param), mesh, "fsdp")
    assert sh["kernel"].spec == P("fsdp", None)
    assert sh["bias"].spec == P()
    with pytest.raises(ValueError, match="unknown sharding strategy 'zero'"):
        state_shardings(nnx.state(model, nnx.Param), mesh, "zero")


def test_distributed_detection_is_a_noop_on_one_process(monkeypatch):
    for var in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(var, raising=False)
    assert detect() is None and initialize() is False and jax.process_count() == 1
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert detect() is None  # one task: nothing to coordinate
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert detect() == "slurm"
    assert initialize("off") is False
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    assert detect() == "explicit"
