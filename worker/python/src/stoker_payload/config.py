"""Payload options as a dataclass: command-line flags plus `--config file.yaml` (TRL-style).

    @dataclasses.dataclass
    class Config:
        steps: int = field(default=100, metadata={"help": "optimizer steps"})
    cfg = parse_config(Config, argv)

Every field becomes a flag (`batch_size` -> `--batch-size`); a YAML file given with
`--config` holds the same names (either `batch_size` or `batch-size`); flags given on the
command line override the file. Problems in the file (unknown keys, wrong types) and
problems the dataclass's `validate()` returns are all reported at once as
PayloadError('BAD_CONFIG'); a missing file is MISSING_INPUT; a malformed command line is
argparse's exit 2 (USAGE).

Supported field types: int, float, str, bool, and Optional[...] of those; a
`metadata={"choices": (...)}` restricts values.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import typing
from typing import Any, Mapping, Optional, Sequence, TypeVar

from .exit_codes import PayloadError

__all__ = ["parse_config", "load_config_file", "check_values"]

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, tuple[type, bool]]:
    """name -> (base type, None allowed)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[type, bool]] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        optional = False
        if typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(args) < len(typing.get_args(hint))
            if len(args) != 1:
                raise TypeError(f"{cls.__name__}.{f.name}: only Optional[X] unions are supported")
            hint = args[0]
        if hint not in (int, float, str, bool):
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported type {hint!r}")
        out[f.name] = (hint, optional)
    return out


def _check_value(name: str, value: Any, kind: type, optional: bool, choices: Optional[Sequence[Any]]) -> tuple[Any, Optional[str]]:
    if value is None:
        return (None, None) if optional else (None, f"{name}: must be a {kind.__name__}, got null")
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            if not math.isfinite(value):
                return value, f"{name}: must be a finite number, got {value}"
    else:
        ok = isinstance(value, str)
    if not ok:
        return value, f"{name}: must be a {kind.__name__}, got {type(value).__name__} {value!r}"
    if choices is not None and value not in choices:
        return value, f"{name}: must be one of {', '.join(map(str, choices))}, got {value!r}"
    return value, None


def load_config_file(path: str) -> dict[str, Any]:
    """The YAML (or JSON, which is YAML) mapping in `path`."""
    if not os.path.isfile(path):
        raise PayloadError("MISSING_INPUT", f"config file does not exist: {path}")
    import yaml  # only needed with --config; ModuleNotFoundError -> MISSING_DEPENDENCY

    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise PayloadError("BAD_CONFIG", f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PayloadError("BAD_CONFIG", f"{path}: must be a mapping of option names to values, got {type(data).__name__}")
    return data


def check_values(cls: type, values: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """Map file keys to field names and type-check them; returns (values, problems)."""
    types = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    known = ", ".join(name.replace("_", "-") for name in fields)
    out: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            problems.append(f"{where}.{key}: unknown option (known: {known})")
            continue
        if name in out:
            problems.append(f"{where}.{key}: given twice")
            continue
        kind, optional = types[name]
        checked, problem = _check_value(f"{where}.{key}", value, kind, optional, fields[name].metadata.get("choices"))
        if problem:
            problems.append(problem)
        else:
            out[name] = checked
    return out, problems


def _build_parser(cls: type, prog: Optional[str], description: Optional[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of these options; flags override it")
    for f in dataclasses.fields(cls):
        kind, optional = _field_types(cls)[f.name]
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {default})" if help_text else f"default: {default}"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            parser.add_argument(
                flag,
                dest=f.name,
                type=kind,
                default=default,
                choices=f.metadata.get("choices"),
                metavar=f.metadata.get("metavar", f.name.upper()),
                help=help_text,
            )
    return parser


def parse_config(
    cls: type[T],
    argv: Optional[Sequence[str]] = None,
    *,
    prog: Optional[str] = None,
    description: Optional[str] = None,
) -> T:
    """Parse `argv` (default sys.argv[1:]) into an instance of the dataclass `cls`."""
    parser = _build_parser(cls, prog, description)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    problems: list[str] = []
    if known.config:
        file_values, problems = check_values(cls, load_config_file(known.config), "config")
        parser.set_defaults(**file_values)
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{name}: must be a finite number, got {value}")
    if problems:
        raise PayloadError("BAD_CONFIG", "invalid configuration:\n  " + "\n  ".join(problems))
    cfg = cls(**values)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        problems = list(validate())
        if problems:
            raise PayloadError("BAD_CONFIG", "invalid configuration:\n  " + "\n  ".join(problems))
    return cfg
