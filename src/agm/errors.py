"""Errors raised by agm. Each message names the bad field, the bad value and what is accepted."""
from __future__ import annotations

import difflib
from typing import Iterable


class AGMError(Exception):
    """Base class of agm's own errors."""


class ConfigError(AGMError, ValueError):
    """A configuration value or key is not accepted."""


class DataError(AGMError, ValueError):
    """Input data has the wrong shape, dtype, or non-finite values."""


class CheckpointError(AGMError, RuntimeError):
    """A run directory or checkpoint is missing, foreign or corrupt."""


class NonFiniteLossError(AGMError, FloatingPointError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept."""


def closest(name: str, valid: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest valid name, or '' if none is close."""
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def check_choice(field: str, value: object, accepted: Iterable[object]) -> None:
    """Raise ConfigError unless ``value`` is one of ``accepted``."""
    accepted = list(accepted)
    if value not in accepted:
        hint = closest(str(value), [str(a) for a in accepted])
        raise ConfigError(f"{field}={value!r} is not accepted; accepted values: {accepted}{hint}")


def check_positive(field: str, value: float, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a positive (or non-negative) number / integer."""
    ok_type = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok_type:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{field}={value!r} must be {kind}")
    if (value < 0) if allow_zero else (value <= 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{field}={value!r} is not accepted; it must be {bound}")
