"""Turn the composed Hydra config into plain, validated values.

This is the only part of the library that touches OmegaConf: components get plain dicts,
numbers and strings. Everything here runs before any data is read or any weight is built, so
a typo costs a second, not an epoch. Every message names the key, the value and the fix.

It also says which keys change what a run computes (:func:`result_differences`): a resumed
run must agree with its checkpoint on all of those.

The package: :mod:`~ugr_experiments.config.checks` (checks of one key),
:mod:`~ugr_experiments.config.validate` (the whole config, and the paths it names) and
:mod:`~ugr_experiments.config.plain` (:func:`to_plain`, and what a resumed run must keep).
"""

from __future__ import annotations

from ugr_experiments.config.checks import (
    MISSING,
    ConfigError,
    check_choice,
    check_int,
    check_number,
    get_key,
    parse_number,
)
from ugr_experiments.config.plain import (
    CPU_RESULT_KEYS,
    RESUME_IGNORED,
    result_differences,
    to_plain,
)
from ugr_experiments.config.validate import DEFAULTS, DEVICES, OPTIMIZERS, check_paths, validate

__all__ = [
    "CPU_RESULT_KEYS",
    "DEFAULTS",
    "DEVICES",
    "MISSING",
    "OPTIMIZERS",
    "RESUME_IGNORED",
    "ConfigError",
    "check_choice",
    "check_int",
    "check_number",
    "check_paths",
    "get_key",
    "parse_number",
    "result_differences",
    "to_plain",
    "validate",
]
