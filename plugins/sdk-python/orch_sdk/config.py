"""Config dataclass → JSON Schema, and the step's `with` JSON → a config dataclass.

Supported field types: str, int, float, bool, list[X], dict[str, X], Optional[X] (X | None),
unions of those, Literal[...], nested dataclasses (recursion allowed) and Any.
A field without a default is required; `field(metadata={"description": "..."})` documents it.
"""

import dataclasses
import difflib
import json
import types
import typing
from typing import Any, Literal, Union

from .errors import InvalidConfig

SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"

_SCALARS = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _fields(cls):
    """The init fields of dataclass `cls` with their resolved annotations."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _strip(tp):
    """`Annotated[X, ...]` → X."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _default(f: dataclasses.Field):
    """The field's default as JSON, or the MISSING marker when it has none (or not JSON)."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return dataclasses.MISSING
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return dataclasses.MISSING
    return value


def _doc(cls):
    """A dataclass's own docstring (not the one `@dataclass` generates)."""
    doc = (cls.__doc__ or "").strip()
    return "" if doc.startswith(cls.__name__ + "(") else doc


class _SchemaBuilder:
    def __init__(self):
        self.stack = []  # dataclasses being built, to spot recursion
        self.recursive = {}  # dataclasses that contain themselves, by name

    def object(self, cls) -> dict:
        self.stack.append(cls)
        schema: dict = {"type": "object"}
        if doc := _doc(cls):
            schema["description"] = doc
        props, required = {}, []
        for f, tp in _fields(cls):
            prop = dict(self.type(tp, f"{cls.__name__}.{f.name}"))
            if description := f.metadata.get("description"):
                prop["description"] = description
            default = _default(f)
            if default is dataclasses.MISSING:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    required.append(f.name)
            else:
                prop["default"] = default
            props[f.name] = prop
        schema["properties"] = props
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
        self.stack.pop()
        return schema

    def type(self, tp, where: str) -> dict:
        tp = _strip(tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp is Any or tp is object:
            return {}
        if tp is type(None) or tp is None:
            return {"type": "null"}
        if tp in _SCALARS:
            return {"type": _SCALARS[tp]}
        if origin is Literal:
            kinds = {_json_type(a) for a in args}
            schema = {"enum": list(args)}
            if len(kinds) == 1:
                schema = {"type": kinds.pop(), **schema}
            return schema
        if _is_union(tp):
            options = [a for a in args if a is not type(None)]
            nullable = len(options) < len(args)
            if len(options) == 1:
                inner = self.type(options[0], where)
                if nullable and isinstance(inner.get("type"), str) and "enum" not in inner:
                    return {**inner, "type": [inner["type"], "null"]}
                return {"anyOf": [inner, {"type": "null"}]} if nullable else inner
            schemas = [self.type(a, where) for a in options]
            return {"anyOf": schemas + ([{"type": "null"}] if nullable else [])}
        if tp is list or origin is list:
            return {"type": "array", "items": self.type(args[0], where)} if args else {"type": "array"}
        if tp is dict or origin is dict:
            if not args:
                return {"type": "object"}
            if _strip(args[0]) is not str:
                raise TypeError(f"{where}: dict keys must be str, not {args[0]!r}")
            return {"type": "object", "additionalProperties": self.type(args[1], where)}
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            if tp in self.stack:
                self.recursive.setdefault(tp.__name__, tp)
                return {"$ref": f"#/definitions/{tp.__name__}"}
            return self.object(tp)
        raise TypeError(
            f"{where}: type {tp!r} is not supported in a config "
            "(use str, int, float, bool, list[X], dict[str, X], Optional[X], Literal[...], "
            "a dataclass or Any)"
        )


def schema(cls) -> dict:
    """The JSON Schema (draft-07) of config dataclass `cls`; None gives any object.

    Raises TypeError naming the field when a field's type cannot be expressed.
    """
    if cls is None:
        return {"$schema": SCHEMA_DIALECT, "type": "object"}
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"Config must be a dataclass type, not {cls!r}")
    builder = _SchemaBuilder()
    root = {"$schema": SCHEMA_DIALECT, "title": cls.__name__, **builder.object(cls)}
    # A dataclass that contains itself is referenced: define each (which may refer to more).
    defs = {}
    while pending := [(n, c) for n, c in builder.recursive.items() if n not in defs]:
        for name, target in pending:
            defs[name] = builder.object(target)
    if defs:
        root["definitions"] = defs
    return root


# Parsing ----------------------------------------------------------------------------------


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _wrong(path: str, expected: str, value) -> InvalidConfig:
    # Only the type: a value cut short could show the start of a secret the host cannot mask.
    return InvalidConfig(f"`{path}` must be {expected}, got {_article(_json_type(value))}")


def _article(kind: str) -> str:
    return _ARTICLE.get(kind, kind)


_ARTICLE = {"string": "a string", "integer": "an integer", "number": "a number",
            "boolean": "a boolean", "array": "an array", "object": "an object"}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _convert(tp, value, path: str):
    tp = _strip(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if tp is type(None) or tp is None:
        if value is not None:
            raise _wrong(path, "null", value)
        return None
    if tp in _SCALARS:
        name = _SCALARS[tp]
        ok = _json_type(value) == name or (tp is float and _json_type(value) == "integer")
        if not ok:
            raise _wrong(path, _ARTICLE[name], value)
        return float(value) if tp is float else value
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise _wrong(path, "one of " + ", ".join(json.dumps(a) for a in args), value)
        return value
    if _is_union(tp):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, path)
            except InvalidConfig as e:
                errors.append(str(e))
        prefix = f"`{path}` must be "
        if all(e.startswith(prefix) for e in errors):
            wanted = [e[len(prefix):].rsplit(", got ", 1)[0] for e in errors]
            raise _wrong(path, " or ".join(wanted + ["null"] * (type(None) in args)), value)
        if len(errors) == 1:
            raise InvalidConfig(errors[0])
        raise InvalidConfig(f"`{path}` matches none of its types: " + "; ".join(errors))
    if tp is list or origin is list:
        if not isinstance(value, list):
            raise _wrong(path, "an array", value)
        if not args:
            return list(value)
        return [_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise _wrong(path, "an object", value)
        if not args:
            return dict(value)
        return {k: _convert(args[1], v, _join(path, k)) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, value, path)
    raise InvalidConfig(f"`{path}`: unsupported config type {tp!r}")


def _dataclass(cls, value, path: str):
    if not isinstance(value, dict):
        raise _wrong(path or "config", "an object", value)
    fields = _fields(cls)
    names = [f.name for f, _ in fields]
    for key in value:
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            maybe = f"; did you mean `{_join(path, hint[0])}`?" if hint else ""
            known = ", ".join(names) or "none"
            raise InvalidConfig(f"unknown field `{_join(path, key)}`{maybe} (fields: {known})")
    kwargs = {}
    for f, tp in fields:
        if f.name in value:
            kwargs[f.name] = _convert(tp, value[f.name], _join(path, f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InvalidConfig(f"missing required field `{_join(path, f.name)}`")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        # Validation in __post_init__ rejects the config.
        raise InvalidConfig(f"`{path}`: {e}" if path else str(e)) from None


def parse(cls, config):
    """Parse the step's `with` (JSON text, or already-decoded data) into dataclass `cls`.

    Raises InvalidConfig naming the field path on unknown or missing fields and wrong types;
    a ValueError or TypeError raised by the dataclass's `__post_init__` becomes InvalidConfig
    too. With `cls` None the decoded object is returned as a dict.
    """
    if isinstance(config, (str, bytes)):
        try:
            config = json.loads(config) if config.strip() else {}
        except ValueError as e:
            raise InvalidConfig(f"the config is not JSON: {e}") from None
    if config is None:
        config = {}
    if cls is None:
        if not isinstance(config, dict):
            raise _wrong("config", "an object", config)
        return config
    return _dataclass(cls, config, "")
