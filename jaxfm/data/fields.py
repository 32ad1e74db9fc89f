"""Field and system registries: stable integer ids by name, append-only, saved with checkpoints.

A model's field embedding has one row per registry id, so the same physical field (say
``velocity_x``) shares a row across every system that has it (MPP, McCabe et al. 2023, keeps
same-named fields of different systems apart; we tie them on purpose, by name). New names are
only ever appended, so ids of a checkpoint stay valid after the registry grows:
:meth:`NameRegistry.check_extends` refuses a registry that renumbers or drops names.

The default registries are derived from the simulators' ``System`` declarations
(:mod:`jaxfm.data.sim.system`), which also fix their order.

The registry serialises to JSON (``{"kind": ..., "names": [...]}``); the trainer stores it with
each checkpoint and restores it before building the model. A field renamed since a checkpoint
was saved keeps its id; :data:`FIELD_ALIASES` maps the old name to the new one when a saved
field registry is read (:meth:`NameRegistry.from_json`, :meth:`NameRegistry.check_extends`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np

from jaxfm.data.sim.registry import SYSTEMS
from jaxfm.data.sim.system import System, field_vocabulary, system_names

DEFAULT_FIELDS: tuple[str, ...] = field_vocabulary(SYSTEMS)
"""Fields of the built-in simulators, in the order their ids were first assigned: derived from
the simulators' declarations (:func:`jaxfm.data.sim.system.field_vocabulary`: first appearance
over the systems walked by ``(vocab_epoch, declaration order)``), so a new system's fields are
appended and existing ids never move."""

DEFAULT_SYSTEMS: tuple[str, ...] = system_names(SYSTEMS)
"""Systems of the built-in simulators, in declaration order (= the order their ids were first
assigned; :data:`jaxfm.data.sim.registry.MODULES`)."""

N_FIELDS = len(DEFAULT_FIELDS)
"""Size of the built-in field vocabulary: the fewest embedding rows (``AViTConfig.n_fields``)
a model needs for every simulated system."""


FIELD_ALIASES: dict[str, str] = {
    "concentration_A": "A",
    "concentration_B": "B",
}
"""Old field name -> current name, for field registries saved before a rename. Gray-Scott's
species took The Well's names (``gray_scott_reaction_diffusion``: fields ``A``, ``B``) at the
same ids."""


def canonical_field_names(names: Iterable[str]) -> list[str]:
    """``names`` with every old name of :data:`FIELD_ALIASES` replaced by its current one."""
    return [FIELD_ALIASES.get(n, n) for n in names]


class NameRegistry:
    """An append-only list of names; a name's id is its position.

    Args:
        names: initial names, in id order (duplicates are an error).
        kind: what the names are (``field`` or ``system``), used in messages and the JSON.
    """

    def __init__(self, names: Iterable[str] = (), kind: str = "field"):
        self.kind = kind
        self._names: list[str] = []
        self._ids: dict[str, int] = {}
        self.extend(names, strict=True)

    @property
    def names(self) -> tuple[str, ...]:
        """All names, in id order."""
        return tuple(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: str) -> bool:
        return name in self._ids

    def __repr__(self) -> str:
        return f"NameRegistry(kind={self.kind!r}, names={self._names!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, NameRegistry) and (self.kind, self.names) == (
            other.kind,
            other.names,
        )

    def extend(self, names: Iterable[str], strict: bool = False) -> NameRegistry:
        """Append names not yet present (in order); returns ``self``.

        Args:
            names: names to add.
            strict: raise on a name given twice or already present.
        """
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
            if name in self._ids:
                if strict:
                    raise ValueError(f"duplicate {self.kind} name {name!r}")
                continue
            self._ids[name] = len(self._names)
            self._names.append(name)
        return self

    def id(self, name: str) -> int:
        """The id of ``name``; an unknown name raises and lists the known ones."""
        try:
            return self._ids[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; known: {self._names} (add it with extend())"
            ) from None

    def ids(self, names: Sequence[str]) -> np.ndarray:
        """int32 ids of ``names``."""
        return np.asarray([self.id(n) for n in names], np.int32)

    def check_extends(self, older: NameRegistry) -> None:
        """Raise unless ``self`` keeps every id of ``older`` (same names at the same positions;
        a field's old name in ``older`` counts as its current one, :data:`FIELD_ALIASES`)."""
        saved = list(older.names)
        if self.kind == "field":
            saved = canonical_field_names(saved)
        if self._names[: len(older)] != saved:
            raise ValueError(
                f"{self.kind} registry is not an append-only extension of the saved one: "
                f"saved {list(older.names)}, current {self._names}"
            )

    def to_json(self) -> str:
        """JSON text ``{"kind": ..., "names": [...]}``."""
        return json.dumps({"kind": self.kind, "names": self._names})

    @classmethod
    def from_json(cls, text: str) -> NameRegistry:
        """Inverse of :meth:`to_json`; old field names are read as their current ones."""
        obj = json.loads(text)
        if not isinstance(obj, dict) or "names" not in obj:
            raise ValueError(f"registry JSON needs a 'names' list, got {text[:80]!r}")
        kind = obj.get("kind", "field")
        names = canonical_field_names(obj["names"]) if kind == "field" else obj["names"]
        return cls(names, kind=kind)


def default_field_registry(systems: Sequence[System] | None = None) -> NameRegistry:
    """A fresh field registry: :data:`DEFAULT_FIELDS`, or the vocabulary of ``systems``."""
    names = DEFAULT_FIELDS if systems is None else field_vocabulary(systems)
    return NameRegistry(names, kind="field")


def default_system_registry(systems: Sequence[System] | None = None) -> NameRegistry:
    """A fresh system registry: :data:`DEFAULT_SYSTEMS`, or the names of ``systems``."""
    names = DEFAULT_SYSTEMS if systems is None else system_names(systems)
    return NameRegistry(names, kind="system")
