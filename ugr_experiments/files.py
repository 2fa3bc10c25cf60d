"""File modes shared by every atomic write (checkpoints, exports, manifests, audio outputs).

An atomic write goes through ``tempfile.mkstemp``, whose files are created 0600 whatever the
umask; renamed into place they would stay private. :func:`file_mode` is the mode that
``open(path, "w")`` would have given instead, which the writers ``chmod`` their temporary
files to before the rename.
"""

from __future__ import annotations

import os

__all__ = ["file_mode"]


def file_mode() -> int:
    """The mode a new file gets under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
