"""Output folders and files of the command-line tools: checked, created, and cleaned up.

``ugr-evaluate``, ``ugr-separate`` and ``ugr-export`` never leave a partial output: they
create the folder they write to with :func:`make_output_dir`, and remove what it created with
:func:`remove_empty_dirs` when nothing gets written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ugr_experiments.files import file_mode

__all__ = ["OutputError", "file_mode", "make_output_dir", "remove_empty_dirs"]


class OutputError(OSError):
    """An output that cannot (or may not) be written (shared by the command-line tools)."""


def make_output_dir(path: Path) -> list[Path]:
    """Create the folder ``path`` and its missing parents, and check it is writable.

    Returns:
        The folders this call created, outermost first (see :func:`remove_empty_dirs`).

    Raises:
        OutputError: the folder cannot be created or a file cannot be created in it.
    """
    path = Path(path)
    missing = [p for p in [path, *path.parents] if not p.exists()][::-1]
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ugr-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        remove_empty_dirs(missing)
        raise OutputError(f"cannot write to the output folder {path}: {err}") from None
    return missing


def remove_empty_dirs(created: list[Path]) -> None:
    """Remove the folders of :func:`make_output_dir`, innermost first, while they are empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            return
