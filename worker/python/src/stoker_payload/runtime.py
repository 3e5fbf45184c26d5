"""What the worker tells a payload through its environment (README: "Worker and payload protocol").

    RANK, WORLD_SIZE, LOCAL_RANK   rank variables (unset: a single process, rank 0)
    STOKER_OUTPUT_DIR              where the payload writes checkpoints and artifacts
    RESUME_FROM                    a checkpoint to continue from (unset or empty: start fresh)

Each function reads the environment when called (pass `env=` to test it), so a payload
reads these once at its entry and passes the values inward.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

from .exit_codes import PayloadError

__all__ = ["rank", "world_size", "local_rank", "is_rank0", "resume_from", "output_dir"]


def _int_env(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PayloadError("BAD_CONFIG", f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise PayloadError("BAD_CONFIG", f"{name} must be >= {minimum}, got {value}")
    return value


def rank(env: Optional[Mapping[str, str]] = None) -> int:
    return _int_env(os.environ if env is None else env, "RANK", 0, 0)


def world_size(env: Optional[Mapping[str, str]] = None) -> int:
    return _int_env(os.environ if env is None else env, "WORLD_SIZE", 1, 1)


def local_rank(env: Optional[Mapping[str, str]] = None) -> int:
    return _int_env(os.environ if env is None else env, "LOCAL_RANK", 0, 0)


def is_rank0(env: Optional[Mapping[str, str]] = None) -> bool:
    """True when RANK is unset, empty or 0: the one process that reports and writes."""
    return rank(env) == 0


def resume_from(env: Optional[Mapping[str, str]] = None, *, must_exist: bool = True) -> Optional[str]:
    """The RESUME_FROM checkpoint path, or None to start fresh.

    A path that does not exist is a PayloadError('MISSING_INPUT'): the worker asked for a
    resume, so silently starting over would throw away the work it meant to keep.
    """
    raw = (os.environ if env is None else env).get("RESUME_FROM", "").strip()
    if raw == "":
        return None
    if must_exist and not os.path.exists(raw):
        raise PayloadError("MISSING_INPUT", f"RESUME_FROM checkpoint does not exist: {raw}")
    return os.path.abspath(raw)


def output_dir(
    override: Optional["os.PathLike[str] | str"] = None,
    env: Optional[Mapping[str, str]] = None,
    *,
    default: "os.PathLike[str] | str" = "out",
    create: bool = False,
) -> str:
    """The output directory, absolute: `override` (a --output-dir flag), else
    $STOKER_OUTPUT_DIR, else `default` (./out)."""
    chosen = override if override not in (None, "") else None
    if chosen is None:
        chosen = (os.environ if env is None else env).get("STOKER_OUTPUT_DIR", "").strip() or default
    path = Path(chosen).expanduser().resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return str(path)
