"""The declaration of one simulated PDE system, and every list derived from the declarations.

Each simulator module declares its systems once, next to its config class::

    SYSTEM = System("burgers", fields=("velocity_x",), bc=("periodic",), config=BurgersConfig(),
                    description="1-D viscous Burgers, periodic (velocity_x)", vocab_epoch=2)
    SYSTEMS = (SYSTEM,)

and its ``simulate`` returns a :class:`~jaxfm.data.trajectories.TrajectorySet` whose field
names and boundary conditions are the declaration's. :mod:`jaxfm.data.sim.registry` collects
the declarations of an explicit tuple of modules; the functions below turn a tuple of
declarations into the field and system vocabularies, the generator's corpus, the surrogate
pipeline's pretraining and fine-tuning lists and the padding width. They take the declarations
as an argument, so a new system shows up everywhere once it is declared and registered.

Ordering rules (ids are positions, saved with checkpoints, so they must never move):

* **Systems** are numbered in declaration order (the registry's module tuple, then each
  module's ``SYSTEMS``). A new system is declared after the existing ones.
* **Fields** are numbered at their first appearance when the systems are walked by
  ``(vocab_epoch, declaration order)``. Epoch 0 holds MPP's systems (shallow water, incompressible
  NS, diffusion-reaction, compressible flow), epoch 1 Gray-Scott, epoch 2 the 1-D systems. A new
  system takes an epoch above every existing one, so its new fields are appended and no
  existing id changes.
* **The pretraining mix** is every 2-D system that is not ``held_out``, ordered by
  ``(mix_order, declaration order)``; systems without a ``mix_order`` follow the ordered ones.
  The order matters: the mixture draws a system by its index.
* **The fine-tuning (transfer) targets** are the ``held_out`` systems, in declaration order.
* **The corpus** of :func:`jaxfm.data.generate.generate_corpus` is every 2-D system, in
  declaration order (system ``i`` is simulated with seed ``seed + i``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jaxfm.data.sim.stepping import config_record
from jaxfm.data.trajectories import TrajectorySet

BOUNDARY_CONDITIONS = ("periodic", "wall", "open")
"""Boundary-condition names, as in The Well (same as ``jaxfm.data.trajectories.BC_TYPES``)."""


@dataclasses.dataclass(frozen=True)
class System:
    """One simulated system: its name, fields and boundary conditions, and where it is used."""

    name: str
    """Registry name, e.g. ``shallow_water``; ``TrajectorySet.system`` of its trajectories."""
    fields: tuple[str, ...]
    """Field (channel) names in the order the simulator stores them (field-registry names)."""
    bc: tuple[str, ...]
    """Boundary condition per spatial axis: ``periodic``, ``wall`` or ``open``."""
    config: Any
    """Default config instance (a frozen dataclass with ``resolution`` and ``n_steps``)."""
    description: str
    """One line for ``--help``."""
    vocab_epoch: int = 0
    """When its fields joined the field vocabulary (see the module docstring)."""
    held_out: bool = False
    """A transfer target: never pretrained on, fine-tuned on by the transfer study."""
    mix_order: int | None = None
    """Position in the default pretraining mix (None: after the ordered systems)."""

    def __post_init__(self):
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "bc", tuple(self.bc))
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise ValueError(f"{self.name}: fields must be distinct and non-empty: {self.fields}")
        if not self.bc or any(b not in BOUNDARY_CONDITIONS for b in self.bc):
            raise ValueError(f"{self.name}: bc {self.bc} must be one of {BOUNDARY_CONDITIONS}")

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (one boundary condition per axis)."""
        return len(self.bc)

    @property
    def n_fields(self) -> int:
        """Number of fields (channels)."""
        return len(self.fields)

    @property
    def periodic(self) -> tuple[bool, ...]:
        """Per spatial axis: is it periodic."""
        return tuple(b == "periodic" for b in self.bc)

    def trajectories(
        self,
        data,
        config: Any,
        *,
        coords: tuple,
        params: dict,
        seed: int,
        scheme: str,
        substeps: int,
    ):
        """The :class:`~jaxfm.data.trajectories.TrajectorySet` of a ``simulate`` call: this
        system's name, fields and boundary conditions, ``config``'s frame spacing, and the
        provenance every simulator records (seed, scheme, substeps, the whole config)."""
        return TrajectorySet(
            system=self.name,
            data=np.asarray(data),
            field_names=self.fields,
            dt=config.frame_dt,
            coords=coords,
            bc=self.bc,
            params=params,
            constants={
                "seed": seed,
                "scheme": scheme,
                "substeps": substeps,
                **config_record(config),
            },
        )


def collect(modules: Iterable[Any]) -> tuple[System, ...]:
    """The declarations ``module.SYSTEMS`` of ``modules``, in order; names must be unique."""
    out: list[System] = []
    for m in modules:
        systems = getattr(m, "SYSTEMS", None)
        if not systems or not all(isinstance(s, System) for s in systems):
            raise TypeError(f"{getattr(m, '__name__', m)} must declare SYSTEMS: tuple[System, ...]")
        out.extend(systems)
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"systems declared twice: {dup}")
    return tuple(out)


def system_names(systems: Sequence[System]) -> tuple[str, ...]:
    """System vocabulary: names in declaration order (ids = positions)."""
    return tuple(s.name for s in systems)


def field_vocabulary(systems: Sequence[System]) -> tuple[str, ...]:
    """Field vocabulary: each field at its first appearance over the systems walked by
    ``(vocab_epoch, declaration order)`` (ids = positions)."""
    walk = sorted(enumerate(systems), key=lambda iv: (iv[1].vocab_epoch, iv[0]))
    return tuple(dict.fromkeys(f for _, s in walk for f in s.fields))


def corpus_systems(systems: Sequence[System]) -> tuple[str, ...]:
    """The default generated corpus: every 2-D system, in declaration order."""
    return tuple(s.name for s in systems if s.ndim == 2)


def pretrain_systems(systems: Sequence[System]) -> tuple[str, ...]:
    """The pretraining mix: 2-D systems that are not held out, by ``(mix_order, declaration)``."""
    pool = [(i, s) for i, s in enumerate(systems) if s.ndim == 2 and not s.held_out]
    key = lambda iv: (iv[1].mix_order is None, iv[1].mix_order or 0, iv[0])
    return tuple(s.name for _, s in sorted(pool, key=key))


def finetune_systems(systems: Sequence[System]) -> tuple[str, ...]:
    """The held-out transfer targets, in declaration order."""
    return tuple(s.name for s in systems if s.held_out)


def max_fields(systems: Sequence[System], names: Iterable[str] | None = None) -> int:
    """The most fields of any system (of those named by ``names``, when given)."""
    keep = None if names is None else set(names)
    return max(s.n_fields for s in systems if keep is None or s.name in keep)


def pad_width(systems: Sequence[System]) -> int:
    """Channels a surrogate example is padded to: the most fields of any corpus (2-D) system,
    so pretraining and fine-tuning on the held-out systems share one channel width."""
    return max_fields(systems, corpus_systems(systems))
