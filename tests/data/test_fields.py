"""Field registry: stable ids, append-only, JSON round trip."""

import numpy as np
import pytest

from jaxfm.data.fields import DEFAULT_FIELDS, NameRegistry, default_field_registry
from jaxfm.data.sim.registry import SIMULATORS


def test_ids_are_positions_and_survive_json():
    reg = default_field_registry()
    assert reg.id("h") == 0 and reg.id("velocity_x") == 1
    back = NameRegistry.from_json(reg.to_json())
    assert back == reg
    np.testing.assert_array_equal(back.ids(["pressure", "h"]), [7, 0])
    assert back.ids(["h"]).dtype == np.int32


def test_append_only_extension_keeps_old_ids():
    old = default_field_registry()
    new = NameRegistry.from_json(old.to_json()).extend(["magnetic_x", "h"])
    assert new.id("magnetic_x") == len(DEFAULT_FIELDS)
    new.check_extends(old)
    renumbered = NameRegistry(["velocity_x", "h"])
    with pytest.raises(ValueError, match="append-only"):
        renumbered.check_extends(NameRegistry(["h", "velocity_x"]))


def test_unknown_and_duplicate_names_fail_loudly():
    reg = default_field_registry()
    with pytest.raises(KeyError, match="unknown field 'vorticity'"):
        reg.id("vorticity")
    with pytest.raises(ValueError, match="duplicate"):
        NameRegistry(["h", "h"])


def test_every_simulator_field_is_registered():
    reg = default_field_registry()
    from jaxfm.data.fields import default_system_registry

    systems = default_system_registry()
    for name in SIMULATORS:
        assert name in systems
    for name in (
        "h",
        "velocity_x",
        "velocity_y",
        "tracer",
        "activator",
        "inhibitor",
        "density",
        "pressure",
        "concentration_A",
        "concentration_B",
        "u",
    ):
        assert name in reg
