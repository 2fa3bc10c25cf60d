"""The output folder named on the command line, checked before Hydra creates it.

Hydra makes ``hydra.run.dir`` (``hydra.sweep.dir`` with ``-m``) before the job starts; a path
that is a file, lies under a file, or cannot be written would end in Hydra's ``mkdir``
traceback. :func:`output_dir_problem` reads the overrides as typed and names the key and the
fix instead. Values with interpolations (``${now:...}``) are left to Hydra.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["output_dir_problem"]

_OVERRIDE = re.compile(r"^\+{0,2}(hydra\.(?:run|sweep)\.dir)=(.*)$")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def output_dir_problem(argv: list[str]) -> str | None:
    """What is wrong with the output folder the command line names, or None.

    Args:
        argv: the command-line arguments (without the program name).

    Returns:
        A message naming the key, the value and the fix; None when the folder can be made
        and written, or when its value has interpolations (left to Hydra). Without the key,
        Hydra's default lies under the working directory, which must then be writable.
    """
    key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(argv) else "hydra.run.dir"
    values = [m.group(2) for m in map(_OVERRIDE.match, argv) if m and m.group(1) == key]
    if not values:
        if os.access(Path.cwd(), os.W_OK | os.X_OK):
            return None
        return (
            f"{key} is not set and its default lies under the current folder {Path.cwd()}, "
            f"which is not writable: run from a folder you can write to, or set "
            f"{key}=<a writable folder>"
        )
    if "${" in values[-1]:
        return None
    value = _unquote(values[-1])
    path = Path(value)
    if path.exists() and not path.is_dir():
        return (
            f"{key}={value} is an existing file, not a folder: the run needs a folder for its "
            f"outputs; choose another path (e.g. {key}={value}_run)"
        )
    existing = next(p for p in [path, *path.absolute().parents] if p.exists())
    if not existing.is_dir():
        return (
            f"{key}={value} lies under {existing}, which is a file, not a folder: choose a "
            f"path under a folder (e.g. {key}=outputs/my_run)"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        return (
            f"{key}={value} cannot be written: {existing} is not writable by this user; choose "
            f"a folder you can write to (e.g. {key}=outputs/my_run) or make it writable "
            f"(chmod u+w {existing})"
        )
    return None
