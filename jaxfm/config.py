"""Typed, frozen experiment configs and the command line that overrides them.

Design (after big_vision's config files and levanter's typed dataclasses): a config is a tree
of frozen dataclasses, each defined next to the code it configures, each field followed by a
docstring string literal. A *preset* is a plain function returning a config; an experiment
script maps names to presets and calls :func:`cli`::

    python experiments/NAME.py PRESET [--section.field value | --section.field=value ...]

* ``--help`` lists every field with its type, the preset's value and its docstring.
* An unknown key or a value of the wrong type is a one-line error that names the key and
  suggests the closest valid one (``difflib``), exit status 2.
* Dashes and underscores are interchangeable in keys (``--init-from`` == ``--init_from``).
* The resolved config is written to ``WORKDIR/config.json`` by the training engine
  (:func:`to_dict`); :func:`from_dict` reads it back with the same checks. A config class
  whose fields were renamed or regrouped can read files saved before the change by defining
  a classmethod ``migrate_dict(data) -> data``, applied before the checks.

The parser is ~200 lines of our own rather than tyro/absl because we want exactly these
one-line errors, field docstrings as help, and no global flag state in notebooks.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import json
import os
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from jaxfm.ckpt.options import CkptConfig
from jaxfm.parallel.options import ParallelConfig
from jaxfm.signals import Terminated, exit_on_sigterm
from jaxfm.train.options import TrainConfig

C = TypeVar("C")


class ConfigError(ValueError):
    """A bad key or value in a config override or a config file (one-line message)."""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Sections shared by every experiment; scripts subclass it to add ``model`` and ``data``."""

    workdir: str = "runs/default"
    """Run directory: config.json, metrics.jsonl, checkpoints/, results.json, plots."""
    init_from: str | None = None
    """Checkpoint (a workdir or a checkpoints/N directory) to load parameters from, for
    fine-tuning; optimizer state and step start fresh. Ignored when WORKDIR already holds a
    checkpoint (resuming wins)."""
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    """Optimisation and loop settings."""
    parallel: ParallelConfig = dataclasses.field(default_factory=ParallelConfig)
    """Device mesh and sharding strategy."""
    ckpt: CkptConfig = dataclasses.field(default_factory=CkptConfig)
    """Checkpointing."""
    restart: bool = False
    """Start from scratch in a workdir whose checkpoints were all moved to
    checkpoints_unreadable/ (otherwise such a run is refused, so that the old metrics are not
    replaced by accident)."""


# --------------------------------------------------------------------------- introspection


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written as string literals right below each field, over the class's MRO."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:] + [None]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def flat_fields(cfg: Any, prefix: str = "") -> dict[str, tuple[Any, Any, str]]:
    """``{"train.steps": (type, value, doc), ...}`` for every leaf field of ``cfg``."""
    out: dict[str, tuple[Any, Any, str]] = {}
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        tp, value = _hints(type(cfg))[f.name], getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            out.update(flat_fields(value, key + "."))
        else:
            out[key] = (tp, value, docs.get(f.name, ""))
    return out


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is tuple:
        return f"tuple[{_type_name(args[0])}, ...]" if args else "tuple"
    return getattr(tp, "__name__", str(tp))


# --------------------------------------------------------------------------- value parsing


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def parse_value(text: Any, tp: Any, key: str) -> Any:
    """Converts ``text`` (a CLI string, or a JSON value) to type ``tp`` for field ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"invalid value {text!r} for {key} (expected {expected})")

    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (text is None or str(text).lower() in ("none", "null")):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_value(text, arg, key)
            except ConfigError:
                continue
        raise bad(_type_name(tp))
    if origin is Literal:
        for choice in args:
            if str(choice) == str(text) or choice == text:
                return choice
        raise bad("one of " + ", ".join(str(a) for a in args))
    if origin is tuple:
        items = (
            text
            if isinstance(text, (list, tuple))
            else [s for s in str(text).strip("()[] ").split(",") if s.strip()]
        )
        inner = args[0] if args else str
        if len(args) > 1 and args[1] is not Ellipsis:
            if len(items) != len(args):
                raise bad(f"{len(args)} comma-separated values")
            return tuple(parse_value(i, a, key) for i, a in zip(items, args))
        return tuple(parse_value(i.strip() if isinstance(i, str) else i, inner, key) for i in items)
    if tp is bool:
        if isinstance(text, bool):
            return text
        if str(text).lower() in _TRUE:
            return True
        if str(text).lower() in _FALSE:
            return False
        raise bad("true or false")
    if tp is int:
        if isinstance(text, bool):
            raise bad("int")
        try:
            value = float(text) if isinstance(text, float) else int(str(text).replace("_", ""))
        except ValueError:
            try:  # accept 1e3 for an int field only when it is integral
                value = float(text)
            except ValueError:
                raise bad("int") from None
        if float(value) != int(value):
            raise bad("int")
        return int(value)
    if tp is float:
        try:
            return float(text)
        except (TypeError, ValueError):
            raise bad("float") from None
    if tp is str:
        return str(text)
    if tp is Any or tp is dict or origin is dict:
        if isinstance(text, str):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return text
        return text
    raise bad(_type_name(tp))


# --------------------------------------------------------------------------- overrides


def _suggest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if not close:  # a bare field name typed without its section: train.steps for steps
        close = [v for v in valid if v.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def override(cfg: C, updates: Mapping[str, Any]) -> C:
    """Returns ``cfg`` with dotted-key ``updates`` applied (values parsed to field types)."""
    flat = flat_fields(cfg)
    sections = {k.rsplit(".", i)[0] for k in flat for i in range(1, k.count(".") + 1)}
    nested: dict[str, Any] = {}
    for raw_key, text in updates.items():
        key = raw_key.replace("-", "_")
        if key not in flat:
            if key in sections:
                raise ConfigError(
                    f"{key} is a config section; set one of its fields, "
                    f"e.g. --{next(k for k in flat if k.startswith(key + '.'))}"
                )
            raise ConfigError(f"unknown config key {key!r}{_suggest(key, list(flat))}")
        if isinstance(text, _BareFlag) and not _accepts_bare_flag(flat[key][0]):
            raise ConfigError(f"--{key} needs a value")
        value = parse_value(text, flat[key][0], key)
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return _replace_nested(cfg, nested)


def _replace_nested(cfg: Any, nested: Mapping[str, Any]) -> Any:
    changes = {}
    for name, value in nested.items():
        if isinstance(value, dict):
            changes[name] = _replace_nested(getattr(cfg, name), value)
        else:
            changes[name] = value
    return dataclasses.replace(cfg, **changes)


class _BareFlag(str):
    """The value of a flag given without one: reads as ``"true"``, but only bool fields accept it.

    A forgotten value (``--train.steps --debug``) must not become ``true`` and then a confusing
    "invalid value 'true'" error; ``override`` says which key needs a value instead.
    """


BARE_FLAG = _BareFlag("true")


def _accepts_bare_flag(tp: Any) -> bool:
    return tp is bool or bool in typing.get_args(tp)


def parse_args(argv: Sequence[str]) -> dict[str, str]:
    """``["--a.b", "1", "--c=x"]`` -> ``{"a.b": "1", "c": "x"}``.

    ``--flag`` alone means true; ``override`` accepts that only for bool fields.
    """
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(
                f"unexpected argument {arg!r}: overrides look like --section.field value"
            )
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key, value = arg[2:], argv[i + 1]
            i += 1
        else:
            key, value = arg[2:], BARE_FLAG
        out[key] = value
        i += 1
    return out


# --------------------------------------------------------------------------- dict round trip


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain JSON-serialisable data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[C], data: Mapping[str, Any], *, where: str = "config") -> C:
    """Builds ``cls`` from :func:`to_dict` output; unknown keys raise :class:`ConfigError`.

    ``cls.migrate_dict(data)``, where defined, first maps an older layout to the current one.
    """
    migrate = getattr(cls, "migrate_dict", None)
    if migrate is not None:
        data = migrate(dict(data))
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints or key not in names:
            raise ConfigError(f"unknown key {key!r} in {where}{_suggest(key, names)}")
        tp = hints[key]
        if _is_section(tp):
            kwargs[key] = from_dict(tp, value, where=f"{where}.{key}")
        else:
            kwargs[key] = parse_value(value, tp, f"{where}.{key}")
    return cls(**kwargs)


def load_json(cls: type[C], path: str) -> C:
    """Reads a ``config.json`` written by the engine back into ``cls``."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    return from_dict(cls, data, where=path)


# --------------------------------------------------------------------------- the CLI


def help_text(prog: str, presets: Mapping[str, Callable[[], Any]], cfg: Any, doc: str = "") -> str:
    """The ``--help`` page: usage, presets, and every field with type, value and docstring."""
    lines = [f"usage: {prog} PRESET [--section.field VALUE ...] [--debug]", ""]
    if doc:
        lines += [doc.strip(), ""]
    lines.append("presets:")
    for name, fn in presets.items():
        first = (fn.__doc__ or "").strip().splitlines()[:1]
        lines.append(f"  {name:<14} {first[0] if first else ''}")
    lines += [
        "",
        "errors: one line on stderr, exit status 2 for bad input (a key, value, file or",
        "checkpoint that cannot be used), 1 for other faults, 143 after SIGTERM; --debug (or",
        "JAXFM_DEBUG=1) shows the full traceback instead.",
        "",
        "overrides (value shown: the chosen preset's, or the first preset's):",
    ]
    for key, (tp, value, fdoc) in flat_fields(cfg).items():
        kind = _type_name(tp).upper() if tp in (int, float, str) else _type_name(tp)
        lines.append(f"  --{key} {kind}  [{value!r}]")
        if fdoc:
            lines += ["      " + s for s in textwrap.wrap(fdoc, 88)]
    return "\n".join(lines)


def is_path_key(name: str) -> bool:
    """Config fields that hold file or directory paths (``~`` and ``$VARS`` expanded)."""
    return name in ("workdir", "init_from", "path", "paths") or name.endswith(
        ("_dir", "_workdir", "_path", "_paths", "_python")
    )


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return os.path.expandvars(os.path.expanduser(value))
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return tuple(_expand(v) for v in value)
    return value


def _expand_paths(cfg: C, top: bool = True) -> C:
    """Expands ``~`` and ``$VARS`` in every path field (:func:`is_path_key`, in every section)
    and refuses an empty workdir.

    The shell does not expand ``~`` inside ``--workdir=~/runs`` (nor in a preset's default),
    and an empty workdir would write checkpoints and metrics into the current directory
    (usually the repository root).
    """
    changes = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            new = _expand_paths(value, top=False)
        elif is_path_key(f.name):
            if top and f.name == "workdir" and isinstance(value, str) and not value.strip():
                raise ConfigError("workdir is empty; give a directory, e.g. --workdir runs/mine")
            new = _expand(value)
            if top and f.name == "workdir" and os.path.exists(new) and not os.path.isdir(new):
                raise ConfigError(f"workdir {new} is a file, not a directory; give a directory")
        else:
            continue
        if new is not value and new != value:
            changes[f.name] = new
    return dataclasses.replace(cfg, **changes) if changes else cfg


def validate(cfg: Any, prefix: str = "") -> None:
    """Runs the ``validate()`` of ``cfg`` and of every section under it (a method returning
    ``[(key, problem), ...]``) and raises one :class:`ConfigError` naming the first full key,
    so a setting that cannot work stops the run before any work starts."""
    problems = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            try:
                validate(value, f"{prefix}{f.name}.")
            except ConfigError as e:
                problems.append(str(e))
    check = getattr(cfg, "validate", None)
    if callable(check):
        problems += [f"{prefix}{key}: {why}" for key, why in check()]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)


def cli(
    cls: type[C],
    presets: Mapping[str, Callable[[], C]],
    argv: Sequence[str] | None = None,
    *,
    doc: str = "",
    prog: str | None = None,
) -> C:
    """Parses ``PRESET [overrides]`` into a config; errors exit with a one-line message.

    Args:
      cls: the experiment's config class (used to type-check the preset's result).
      presets: preset name -> function returning a config.
      argv: arguments without the program name (default ``sys.argv[1:]``).
      doc: description printed by ``--help`` (usually the script's module docstring).
      prog: program name for ``--help``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if prog is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)  # set under python -m
        prog = f"python -m {spec.name}" if spec and spec.name else (sys.argv or ["experiment"])[0]
    want_help = any(a in ("-h", "--help") for a in argv)
    argv = [a for a in argv if a not in ("-h", "--help")]
    name = argv.pop(0) if argv and not argv[0].startswith("--") else None
    if want_help:
        fn = presets.get(name) if name else next(iter(presets.values()))
        print(help_text(prog, presets, (fn or next(iter(presets.values())))(), doc))
        raise SystemExit(0)
    try:
        if name is None:
            raise ConfigError(f"missing PRESET; choose one of: {', '.join(presets)}")
        if name not in presets:
            raise ConfigError(
                f"unknown preset {name!r}{_suggest(name, list(presets))}; "
                f"choose one of: {', '.join(presets)}"
            )
        cfg = presets[name]()
        if not isinstance(cfg, cls):
            raise ConfigError(f"preset {name!r} returned {type(cfg).__name__}, not {cls.__name__}")
        cfg = _expand_paths(override(cfg, parse_args(argv)))
        validate(cfg)
        return cfg
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


BAD_INPUT = (
    ValueError,
    LookupError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
    PermissionError,
)
"""Exceptions a run reports as bad input (exit status 2): jaxfm raises ValueError / KeyError
subclasses (ConfigError, CheckpointError, DataPathError, ...) for keys, values, files and
checkpoints it cannot use; a missing or unwritable path is an OSError subclass."""


def run_cli(
    main: Callable[[C], Any],
    cls: type[C],
    presets: Mapping[str, Callable[[], C]],
    argv: Sequence[str] | None = None,
    *,
    doc: str = "",
) -> Any:
    """An experiment script's whole ``__main__``: :func:`cli`, then ``main(cfg)``.

    A failure prints ``error: <one line>`` on stderr and exits 2 for bad input
    (:data:`BAD_INPUT`) or 1 for any other fault; ``SystemExit`` from the run (143 after
    SIGTERM in the training loop) passes unchanged, and SIGTERM in any other phase prints what
    it stopped and exits 143 too (:mod:`jaxfm.signals`). ``--debug`` on the command line
    or ``JAXFM_DEBUG=1`` re-raises with the full traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("JAXFM_DEBUG", "") not in ("", "0")
    cfg = cli(cls, presets, [a for a in argv if a != "--debug"], doc=doc)
    try:
        with exit_on_sigterm():
            return main(cfg)
    except Terminated as e:  # SIGTERM outside the training loop (which says so itself)
        print(e.message, file=sys.stderr, flush=True)
        raise SystemExit(e.code) from None
    except Exception as e:  # SystemExit and KeyboardInterrupt are not Exceptions
        if debug:
            raise
        bad = isinstance(e, BAD_INPUT)
        text = " ".join(str(e).split()) or type(e).__name__
        if not bad:
            text = f"{type(e).__name__}: {text}"
        print(f"error: {text} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(2 if bad else 1) from None
