"""Hyperparameters as dataclasses read from EasyEdit-style YAML files.

``from_hparams(path)`` reads the YAML with :func:`safe_load` (``yaml.safe_load`` that also refuses a key
given twice in one mapping, bounds what aliases expand to and caps the file's size), warns about keys
the dataclass does not know (naming them), and raises :class:`HParamsError` naming the file and the key
for a missing required key or a value of the wrong type (the value echoed, cut short when long). Key names follow EasyEdit (``alg_name``,
``layers``, ``lr``, ``n_epochs``, ``steering_factors``, ``pos_loss_weight`` …).
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from easyedit_split.base.safe_text import printable, shown
from easyedit_split.errors import EasyEditSplitError

logger = logging.getLogger(__name__)

__all__ = ["MAX_YAML_BYTES", "MAX_YAML_NODES", "HParamsError", "HyperParams", "coerce_value", "load_yaml",
           "read_yaml_mapping", "safe_load"]

#: the largest YAML file read (hyperparameters, dataset formats, run configs are a few KB)
MAX_YAML_BYTES = 4 * 1024 * 1024
#: the most values a YAML document may hold once its aliases are expanded (a "billion laughs" document
#: is small on disk but expands to billions of values)
MAX_YAML_NODES = 1_000_000


class HParamsError(EasyEditSplitError, ValueError):
    """A hyperparameter file or value is invalid."""


class _StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML says keys are unique;
    PyYAML keeps the last silently) and a document whose aliases expand to more than
    :data:`MAX_YAML_NODES` values."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # ``<<: *base`` merges; its keys may be overridden on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: the constructor reports it
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"found the key {shown(key)} a second time (first on line {first}); a key may be given once — "
                        "delete one of them", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1 if key_node.start_mark else "?"
        return super().construct_mapping(node, deep=deep)

    def construct_document(self, node):
        _check_expansion(node)
        return super().construct_document(node)


def _check_expansion(root: yaml.Node) -> None:
    """Raise when the document's values, aliases expanded, exceed :data:`MAX_YAML_NODES` (computed over the
    node graph with memoisation, so in time linear in the document's size)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # being expanded: an alias back to one (a recursive document) counts once
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value))
        if not children_done:
            if id(node) in sizes or id(node) in open_nodes:
                continue
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes and id(c) not in open_nodes)
            continue
        open_nodes.discard(id(node))
        total = 1 + sum(sizes.get(id(c), 1) for c in children)
        if total > MAX_YAML_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"the document's aliases expand to more than {MAX_YAML_NODES:,} values (a 'billion "
                "laughs' document?); write the values out, or use fewer aliases", node.start_mark)
        sizes[id(node)] = total


def safe_load(text: str | bytes, *, source: str = "YAML") -> Any:
    """``yaml.safe_load`` with duplicate keys refused and alias expansion bounded (see
    :class:`_StrictSafeLoader`); errors are ``yaml.YAMLError``. The one YAML reader of the package."""
    return yaml.load(text, Loader=_StrictSafeLoader)


def read_yaml_mapping(path: str | os.PathLike, *, error: type[Exception] = HParamsError,
                      what: str = "hyperparameter file") -> dict[str, Any]:
    """A YAML file whose top level is a mapping, read with :func:`safe_load` (an empty file is ``{}``).

    Raises ``error`` naming the file (``what`` says what it is) when it is missing, larger than
    :data:`MAX_YAML_BYTES`, not UTF-8, not valid YAML (a key given twice, aliases that expand too far)
    or not a mapping.
    """
    p = Path(path)
    try:
        is_file = p.is_file()
    except OSError as exc:  # a symlink loop, a name too long …
        raise error(f"{what} {p} cannot be read ({exc.strerror or exc})") from None
    if not is_file:
        raise error(f"{what} {p} {'is a folder, not a file' if p.is_dir() else 'is not a file' if p.exists() else 'does not exist'}")
    size = p.stat().st_size
    if size > MAX_YAML_BYTES:
        raise error(f"{what} {p} is {size:,} bytes; a YAML file of settings is at most {MAX_YAML_BYTES:,} bytes here")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{p}:{line}: not UTF-8 text (byte {exc.start}: {exc.reason}); re-save the file as UTF-8") from None
    try:
        data = safe_load(text, source=str(p))
    except yaml.YAMLError as exc:
        raise error(f"{p}: not valid YAML: {printable(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{p}: the top level must be a mapping of keys to values, got {type(data).__name__}")
    return data


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """An EasyEdit-style hyperparameter YAML as a dict (``.yaml`` may be omitted, as upstream allows)."""
    p = Path(path)
    if not p.exists() and p.suffix not in (".yaml", ".yml"):
        p = p.with_name(p.name + ".yaml")
    data = read_yaml_mapping(p)
    if not data:  # every setting would silently be a default (layer 15, the default data and model)
        raise HParamsError(f"{p}: the hyperparameter file is empty (no keys); give at least alg_name and layers")
    return data


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        return typing.Union[tuple(args)], True  # type: ignore[return-value]  # noqa: UP007
    return tp, False


def coerce_value(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently coerce: int→float, '1e-3'→float, scalar→[scalar]) ``value`` against ``tp``."""
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise HParamsError(f"{where}: must not be null")
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce_value(value, arg, where)
            except HParamsError:
                continue
        raise HParamsError(f"{where}: {shown(value)} matches none of {tp}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise HParamsError(f"{where}: expected true/false, got {shown(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise HParamsError(f"{where}: expected an integer, got {shown(value)}")
    if tp is float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)  # EasyEdit writes 1e-3 which YAML 1.1 reads as a string
            except ValueError:
                pass
        if number is None:
            raise HParamsError(f"{where}: expected a number, got {shown(value)}")
        if not math.isfinite(number):
            raise HParamsError(f"{where}: must be a finite number, got {shown(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise HParamsError(f"{where}: expected a string, got {shown(value)}")
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [coerce_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise HParamsError(f"{where}: expected a mapping, got {shown(value)}")
        return dict(value)
    return value


#: where the hparams being built come from (a file name), for the messages of ``__post_init__``
_SOURCE: contextvars.ContextVar[str] = contextvars.ContextVar("hparams_source", default="<hparams>")


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _non_finite_fields(obj: Any) -> list[str]:
    bad = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            bad.append(f.name)
    return bad


@dataclass
class HyperParams:
    """Base class. Subclasses set ``ALG_NAMES`` (accepted ``alg_name`` values, lower-case).

    Every instance is checked in ``__post_init__`` — however it is built (YAML, dict, or the
    constructor): numbers must be finite, then :meth:`apply_sentinels` maps documented sentinels to their
    canonical value and :meth:`validate` checks ranges, raising :class:`HParamsError` naming the key.
    """

    ALG_NAMES: ClassVar[tuple[str, ...]] = ()
    #: keys EasyEdit files carry that this plugin reads elsewhere or deliberately ignores (no warning)
    IGNORED_KEYS: ClassVar[tuple[str, ...]] = ()

    alg_name: str = ""

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], *, source: str = "<dict>", overrides: Mapping[str, Any] | None = None):
        data = dict(config)
        if overrides:
            data.update(overrides)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        unknown = sorted(k for k in data if k not in fields and k not in cls.IGNORED_KEYS)
        if unknown:
            logger.warning("%s: unknown keys ignored by %s: %s", source, cls.__name__, ", ".join(unknown))
        kwargs = {}
        for name, f in fields.items():
            if name in data:
                kwargs[name] = coerce_value(data[name], hints.get(name, Any), f"{source}: key '{name}'")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                raise HParamsError(f"{source}: required key '{name}' is missing")
        token = _SOURCE.set(source)
        try:
            obj = cls(**kwargs)  # __post_init__ checks the values, naming ``source``
        finally:
            _SOURCE.reset(token)
        if cls.ALG_NAMES and str(obj.alg_name).lower() not in cls.ALG_NAMES:
            raise HParamsError(f"{source}: key 'alg_name' is {obj.alg_name!r}; {cls.__name__} accepts {list(cls.ALG_NAMES)}")
        return obj

    def __post_init__(self) -> None:
        source = _SOURCE.get()
        bad = _non_finite_fields(self)
        if bad:
            raise HParamsError(f"{source}: key '{bad[0]}' must be a finite number, got {shown(getattr(self, bad[0]))}")
        hints = _field_hints(type(self))
        for f in dataclasses.fields(self):  # the constructor gets the same type checks as a YAML file
            value = getattr(self, f.name)
            if value is None and f.default is None:  # a None default is the class's own sentinel
                continue
            object.__setattr__(self, f.name, coerce_value(value, hints.get(f.name, Any), f"{source}: key '{f.name}'"))
        self.apply_sentinels(source)
        self.validate(source)
        object.__setattr__(self, "_built", True)

    def __setattr__(self, name: str, value: Any) -> None:
        """A key assigned after the object is built is type-checked like one read from a file."""
        if self.__dict__.get("_built"):
            hints = _field_hints(type(self))
            if name in hints and name in {f.name for f in dataclasses.fields(self)}:
                value = coerce_value(value, hints[name], f"{type(self).__name__}.{name}")
        object.__setattr__(self, name, value)

    @classmethod
    def from_hparams(cls, path: str | os.PathLike, overrides: Mapping[str, Any] | None = None):
        """Build from an EasyEdit-style YAML file (``.yaml`` may be omitted, as upstream allows)."""
        return cls.from_dict(load_yaml(path), source=str(path), overrides=overrides)

    def apply_sentinels(self, source: str) -> None:
        """Map documented sentinels to their canonical value (e.g. ``max_grad_norm: -1`` → None)."""

    def validate(self, source: str) -> None:
        """Cross-field checks; raise HParamsError naming ``source`` and the key."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_range(source: str, key: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                exclusive_min: bool = False, exclusive_max: bool = False, hint: str = "") -> None:
    """Raise :class:`HParamsError` naming ``source`` and ``key`` when ``value`` is outside the range."""
    if value is None:
        return
    low_ok = minimum is None or (value > minimum if exclusive_min else value >= minimum)
    high_ok = maximum is None or (value < maximum if exclusive_max else value <= maximum)
    if low_ok and high_ok:
        return
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if exclusive_min else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"{'<' if exclusive_max else '<='} {maximum:g}")
    raise HParamsError(f"{source}: key '{key}' must be {' and '.join(parts)}, got {shown(value)}{hint}")


def check_layers(source: str, layers: list[int]) -> None:
    """Raise :class:`HParamsError` naming ``source`` when ``layers`` is empty or has a negative layer."""
    if not layers:
        raise HParamsError(f"{source}: key 'layers' must list at least one layer")
    negative = [layer for layer in layers if layer < 0]
    if negative:
        raise HParamsError(f"{source}: key 'layers' has {negative}; layers count from 0 (negative indices are "
                           "refused: they would name a different layer on a model of another depth)")


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["lr=0.01", "layers=[3]"]`` → ``{"lr": 0.01, "layers": [3]}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise HParamsError(f"override {item!r} is not of the form key=value")
        key, _, raw = item.partition("=")
        if not key.strip():
            raise HParamsError(f"override {item!r} has no key before '='")
        try:
            value = safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise HParamsError(f"override {shown(item)}: the value is not valid YAML ({printable(exc)}); quote it, "
                               f"e.g. {key.strip()}='\"…\"'") from None
        if key.strip() in out:
            raise HParamsError(f"override key {key.strip()!r} is given twice; give it once")
        out[key.strip()] = value
    return out

