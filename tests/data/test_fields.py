"""Field/system registries and the system declarations every list is derived from.

The expected fields, boundary conditions and dimensions of each system are asked of the
simulators themselves (a tiny run), not copied from code; every registry and list is then
checked to be what the declarations derive, and a fake extra system to show up in all of them.
"""

import dataclasses
import types

import numpy as np
import pytest

from jaxfm.data.fields import (
    DEFAULT_FIELDS,
    DEFAULT_SYSTEMS,
    FIELD_ALIASES,
    N_FIELDS,
    NameRegistry,
    default_field_registry,
    default_system_registry,
)
from jaxfm.data.generate import CORPUS_SYSTEMS
from jaxfm.data.sim import system as S
from jaxfm.data.sim.registry import MODULES, SIMULATORS, SYSTEMS, simulators
from jaxfm.data.sim.system import System
from jaxfm.data.well import read_well, write_well
from jaxfm.tasks.surrogate import pipeline

#: Field ids as first assigned, which saved checkpoints' embedding rows encode. The derived
#: vocabulary may grow at the end but must keep these positions. Gray-Scott's fields have
#: since taken The Well's names A and B (same ids; FIELD_ALIASES reads the old names).
CHECKPOINT_FIELD_IDS = (
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
)


# ----------------------------------------------------------------------------- registries


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


def test_field_ids_of_saved_checkpoints_are_kept():
    default_field_registry().check_extends(NameRegistry(CHECKPOINT_FIELD_IDS))


def test_gray_scott_uses_the_wells_field_names_with_the_old_ids():
    reg = default_field_registry()
    assert SIMULATORS["gray_scott"].system.fields == ("A", "B")
    old = NameRegistry(CHECKPOINT_FIELD_IDS)
    assert (reg.id("A"), reg.id("B")) == (old.id("concentration_A"), old.id("concentration_B"))
    assert FIELD_ALIASES == {"concentration_A": "A", "concentration_B": "B"}
    # a registry saved with the old names reads back with the new ones, ids unchanged
    saved = NameRegistry.from_json(old.to_json())
    assert saved.names[8:10] == ("A", "B") and saved.names[:8] == CHECKPOINT_FIELD_IDS[:8]
    reg.check_extends(saved)
    # a system registry never renames
    systems = NameRegistry(["concentration_A"], kind="system")
    assert NameRegistry.from_json(systems.to_json()).names == ("concentration_A",)
    with pytest.raises(ValueError, match="append-only"):
        reg.check_extends(NameRegistry(["h", "A", "velocity_x"]))


# ----------------------------------------------------------------------------- simulators


def _tiny(name: str):
    sim = SIMULATORS[name]
    return sim.simulate(dataclasses.replace(sim.config, resolution=16, n_steps=2), 1, 0)


@pytest.mark.parametrize("system", SYSTEMS, ids=lambda s: s.name)
def test_simulator_returns_its_declaration(system, tmp_path):
    ts = _tiny(system.name)
    assert ts.system == system.name
    assert ts.field_names == system.fields and ts.data.shape[-1] == system.n_fields
    assert ts.bc == system.bc
    assert ts.data.ndim - 3 == system.ndim == len(ts.coords)
    assert ts.data.shape[:2] == (1, 2)
    # every returned field has an id, and The Well writer/reader keep names and BCs
    default_field_registry().ids(ts.field_names)
    write_well(ts, tmp_path / "t.h5")
    back = read_well(tmp_path / "t.h5")
    assert (back.system, back.field_names, back.bc) == (system.name, system.fields, system.bc)
    if system.ndim == 2:
        table = pipeline.periodic_table({system.name: ts})
        assert tuple(table[default_system_registry().id(system.name)]) == system.periodic


# ----------------------------------------------------------------------------- derivations


def test_every_registry_and_list_is_derived_from_the_declarations():
    assert SYSTEMS == S.collect(MODULES)
    assert tuple(SIMULATORS) == S.system_names(SYSTEMS) == DEFAULT_SYSTEMS
    assert all(SIMULATORS[s.name].system is s for s in SYSTEMS)
    assert DEFAULT_FIELDS == S.field_vocabulary(SYSTEMS)
    assert default_field_registry() == NameRegistry(S.field_vocabulary(SYSTEMS), kind="field")
    assert default_system_registry() == NameRegistry(S.system_names(SYSTEMS), kind="system")
    assert N_FIELDS == len(DEFAULT_FIELDS)
    assert {f for s in SYSTEMS for f in s.fields} == set(DEFAULT_FIELDS)
    assert CORPUS_SYSTEMS == S.corpus_systems(SYSTEMS)
    assert pipeline.PRETRAIN_SYSTEMS == S.pretrain_systems(SYSTEMS)
    assert pipeline.PDEDataConfig().systems == pipeline.PRETRAIN_SYSTEMS
    assert pipeline.FINETUNE_SYSTEMS == S.finetune_systems(SYSTEMS)
    assert pipeline.PDEDataConfig().pad_fields == pipeline.PAD_FIELDS == S.pad_width(SYSTEMS)
    # what the derivations mean, stated once more on the declarations
    held = {s.name for s in SYSTEMS if s.held_out}
    assert held and not held & set(pipeline.PRETRAIN_SYSTEMS)
    assert set(pipeline.PRETRAIN_SYSTEMS) | held == set(CORPUS_SYSTEMS)
    assert all(SIMULATORS[n].system.ndim == 2 for n in CORPUS_SYSTEMS)
    assert pipeline.PAD_FIELDS == max(SIMULATORS[n].system.n_fields for n in CORPUS_SYSTEMS)


def test_experiments_use_the_derived_lists():
    from experiments import surrogate_finetune, surrogate_transfer

    assert surrogate_transfer.StudyOptions().targets == pipeline.FINETUNE_SYSTEMS
    for preset in surrogate_finetune.PRESETS.values():
        model = preset().model
        assert model.fno.n_channels == model.unet.n_channels == pipeline.PAD_FIELDS


def test_default_avit_has_a_row_for_every_field():
    from jaxfm.tasks.surrogate.task import SurrogateTaskConfig

    pipeline.check_field_slots(SurrogateTaskConfig())
    small = SurrogateTaskConfig(avit=dataclasses.replace(SurrogateTaskConfig().avit, n_fields=4))
    with pytest.raises(ValueError, match="n_fields"):
        pipeline.check_field_slots(small)


def _fake(name="mhd", fields=("density", "magnetic_x", "magnetic_y"), bc=None, **kw):
    kw.setdefault("vocab_epoch", max(s.vocab_epoch for s in SYSTEMS) + 1)
    return System(
        name, fields, bc or ("periodic", "periodic"), config=None, description="fake", **kw
    )


def test_a_new_system_shows_up_everywhere():
    new = SYSTEMS + (_fake(),)
    assert S.system_names(new) == DEFAULT_SYSTEMS + ("mhd",)
    assert S.field_vocabulary(new) == DEFAULT_FIELDS + ("magnetic_x", "magnetic_y")
    default_field_registry(new).check_extends(default_field_registry())
    default_system_registry(new).check_extends(default_system_registry())
    assert S.corpus_systems(new) == CORPUS_SYSTEMS + ("mhd",)
    assert S.pretrain_systems(new) == pipeline.PRETRAIN_SYSTEMS + ("mhd",)
    assert S.finetune_systems(new) == pipeline.FINETUNE_SYSTEMS
    # a held-out one is a fine-tuning target, never pretrained on; a wide one widens the pad
    wide = SYSTEMS + (_fake(fields=tuple(f"f{i}" for i in range(6)), held_out=True),)
    assert S.finetune_systems(wide) == pipeline.FINETUNE_SYSTEMS + ("mhd",)
    assert S.pretrain_systems(wide) == pipeline.PRETRAIN_SYSTEMS
    assert S.pad_width(wide) == 6
    # a 3-D system is in neither the 2-D corpus nor the pad width
    cube = SYSTEMS + (_fake(fields=tuple("abcdefg"), bc=("open",) * 3),)
    assert S.corpus_systems(cube) == CORPUS_SYSTEMS and S.pad_width(cube) == pipeline.PAD_FIELDS
    # the registry builds simulators from any tuple of modules
    module = types.SimpleNamespace(SYSTEMS=(_fake(),), simulate=lambda c, n, s: None)
    assert list(simulators(MODULES + (module,))) == [*DEFAULT_SYSTEMS, "mhd"]


def test_a_new_system_in_an_old_epoch_would_renumber_fields():
    # why new systems take a later vocab_epoch: an epoch-0 system's new field lands before
    # Gray-Scott's and shifts their ids, which the append-only check refuses
    new = SYSTEMS + (_fake(fields=("vorticity",), vocab_epoch=0),)
    with pytest.raises(ValueError, match="append-only"):
        default_field_registry(new).check_extends(default_field_registry())


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="bc"):
        _fake(bc=("neumann", "open"))
    with pytest.raises(ValueError, match="distinct"):
        _fake(fields=("h", "h"))
    with pytest.raises(ValueError, match="declared twice"):
        S.collect(MODULES + MODULES[:1])
    with pytest.raises(TypeError, match="SYSTEMS"):
        S.collect([types.SimpleNamespace(__name__="empty")])
