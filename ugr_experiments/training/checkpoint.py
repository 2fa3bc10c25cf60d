"""Checkpoints: written atomically, read back as plain data with ``weights_only=True``.

A checkpoint is data, never code: a dict of tensors, numbers, strings, lists and dicts only
(RNG states as tensors, the config as YAML text), so ``torch.load(weights_only=True)`` reads
it. Every checkpoint carries a SHA-256 ``digest`` of its contents, checked on loading: a file
that was truncated or damaged on disk is reported by name instead of being trained on.

A run directory keeps three files in ``checkpoints/``:

- ``last.pt``: the newest state (every ``checkpoint.every_steps`` steps, every epoch, and when
  a SIGINT or SIGTERM stops the run);
- ``previous.pt``: the ``last.pt`` that the newest one replaced, a fallback should ``last.pt``
  be damaged;
- ``best.pt``: the state at the end of the epoch with the best validation SI-SDRi.

A write killed outright (SIGKILL, power loss) can leave its temporary file
(``.last.pt.<random>.tmp``) behind; :func:`newest_resumable`, which every resume starts with,
removes such leftovers. Files get the mode of the umask (``0o666 & ~umask``), as any other.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import random
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ugr_experiments.files import file_mode

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST, PREVIOUS, BEST = "last.pt", "previous.pt", "best.pt"
# Version 1: model, optimizer, scheduler, rng, config, train_state
# (see ugr_experiments.training.resume).
FORMAT_VERSION = 1
RESUME_KEYS = ("format", "model", "optimizer", "scheduler", "rng", "config", "train_state")
# torch's wording for a pickled global that weights_only refuses, old and new:
# "Unsupported global: GLOBAL __main__.Net was not an allowed global by default" and
# "Trying to load unsupported GLOBAL posix.system whose module posix is blocked".
_UNSAFE_GLOBAL = re.compile(r"unsupported (?:global:\s*)?GLOBAL ([\w.]+)", re.IGNORECASE)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what is wrong with it."""


def save_checkpoint(
    state: dict[str, Any], path: str | Path, previous: str | Path | None = None
) -> Path:
    """Write ``state`` to ``path`` so that a crash mid-write never leaves a broken file.

    The bytes go to a temporary file in the same directory, are flushed to disk, and the file
    is renamed over ``path`` (an atomic replace on POSIX and Windows). A ``digest`` of the
    contents is added, so that later damage is detected by :func:`load_checkpoint`.

    Args:
        state: plain data (tensors, numbers, strings, lists, dicts).
        path: the checkpoint file.
        previous: if given and ``path`` exists, the old ``path`` is first kept there (also
            atomically), so a good older checkpoint survives whatever happens to ``path``.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {key: value for key, value in state.items() if key != "digest"}
    content["digest"] = state_digest(content)
    tmp = _write_temporary(content, path)
    try:
        if previous is not None and path.exists():
            _copy_atomically(path, Path(previous))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint as data (tensors, numbers, strings, lists, dicts), never as code.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is truncated, corrupt, or holds something other than data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises OSError, EOFError, RuntimeError, UnpicklingError
        raise CheckpointError(_unreadable_message(path, err)) from err
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, not a dict of training state"
        )
    check_digest(state, path)
    return state


def check_digest(state: dict[str, Any], path: Path) -> None:
    """Remove ``state["digest"]`` and check it against the contents (no digest: nothing to check).

    Raises:
        CheckpointError: the contents changed after the file was written.
    """
    digest = state.pop("digest", None)
    if digest is not None and digest != state_digest(state):
        raise CheckpointError(
            f"{path} is corrupt: its contents no longer match the checksum (SHA-256 digest) "
            "written with it (damaged on disk or edited after it was written). Copy it again "
            "from a good copy, or use another checkpoint of the run"
        )


def torch_load_detail(err: BaseException) -> str:
    """torch.load's reason for a failure, without its advice to retry with weights_only=False."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if "weights_only" not in line and "Weights only" not in line]
    return f"{type(err).__name__}: {useful[0] if useful else ''}"[:200]


def unsafe_global(err: BaseException) -> str | None:
    """The pickled class or function that a weights-only load refused, if that was the failure."""
    found = _UNSAFE_GLOBAL.search(str(err)) if isinstance(err, pickle.UnpicklingError) else None
    return found.group(1) if found else None


def code_objects_message(path: Path, name: str) -> str:
    """Why a file that pickles code was not loaded, and what to do instead."""
    return (
        f"{path} holds code objects ({name}), not only data, and was refused for safety: "
        "loading it could run arbitrary code. Files written by ugr-experiments hold tensors, "
        "numbers, strings, lists and dicts only; if you made this file, load it in the code "
        "that wrote it and save its state dict instead"
    )


def _unreadable_message(path: Path, err: Exception) -> str:
    if (name := unsafe_global(err)) is not None:
        return f"checkpoint {code_objects_message(path, name)}"
    size = path.stat().st_size
    detail = torch_load_detail(err)
    if isinstance(err, pickle.UnpicklingError) and zipfile.is_zipfile(path):
        return (
            f"checkpoint {path} holds objects that a weights-only load refuses (not plain "
            f"data; {detail}); re-save it with tensors, numbers, strings, lists and dicts only"
        )
    return f"checkpoint {path} is truncated or corrupt ({size} bytes; torch.load: {detail})"


def _write_temporary(content: dict[str, Any], path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, file_mode())  # the umask's mode, not mkstemp's 0600
        with os.fdopen(fd, "wb") as handle:
            torch.save(content, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _copy_atomically(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` without ever leaving a partial ``dst``."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)  # a hard link: no bytes copied
    except OSError:
        shutil.copyfile(src, tmp)  # file systems without hard links
    os.replace(tmp, dst)


def _fsync_directory(directory: Path) -> None:
    """Make the renames durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def state_digest(state: Any) -> str:
    """SHA-256 of a checkpoint's contents: tensor bytes, dtypes, shapes, numbers and strings.

    Dict keys are visited in sorted order and tuples count as lists, so a state and the same
    state loaded back from disk have the same digest.
    """
    hasher = hashlib.sha256()
    _feed(hasher, state)
    return hasher.hexdigest()


def _feed(hasher: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        flat = obj.detach().cpu().contiguous().reshape(-1)
        hasher.update(f"T{flat.dtype}{tuple(obj.shape)}".encode())
        hasher.update(flat.view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        hasher.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _feed(hasher, key)
            _feed(hasher, obj[key])
    elif isinstance(obj, list | tuple):
        hasher.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(hasher, item)
    else:
        hasher.update(f"{type(obj).__name__}:{obj!r};".encode())


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) random states, as tensors and numbers."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where CUDA is available)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    key = npy["key"].cpu().numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]][: torch.cuda.device_count()]
        for index, cuda_state in enumerate(cuda):
            torch.cuda.set_rng_state(cuda_state, index)


def checkpoint_dir(run_dir: str | Path) -> Path:
    """``<run_dir>/checkpoints``."""
    return Path(run_dir) / CHECKPOINT_DIR


def check_resumable(state: dict[str, Any], path: Path) -> None:
    """Raise CheckpointError unless ``state`` holds everything a resume needs."""
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} cannot be resumed from: it lacks {missing or ['nothing']} and "
            f"has format {state.get('format')!r} (this version writes format {FORMAT_VERSION}); "
            "it was written by another version of ugr-experiments: start a new run"
        )


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files that killed checkpoint writes left in ``folder``.

    Only this module's names are touched: ``.last.pt.*.tmp``, ``.previous.pt.*.tmp`` and
    ``.best.pt.*.tmp``. Call it before a run writes into ``folder`` (only one run writes there).

    Returns:
        The files removed.
    """
    stale = [p for name in (LAST, PREVIOUS, BEST) for p in folder.glob(f".{name}.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info(
            "removed %d temporary file(s) of interrupted checkpoint writes in %s",
            len(stale),
            folder,
        )
    return stale


def newest_resumable(run_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The usable checkpoint of ``run_dir`` that is furthest into training.

    ``last.pt``, ``previous.pt`` and ``best.pt`` are tried; each that is damaged is named in
    a warning and skipped, so an older good checkpoint is used instead.

    Returns:
        ``(path, state)``, or None when the run directory holds no checkpoint at all.

    Raises:
        CheckpointError: checkpoints exist but none is usable (each one and why is listed).
    """
    folder = checkpoint_dir(run_dir)
    remove_stale_temporaries(folder)
    candidates = [folder / name for name in (LAST, PREVIOUS, BEST) if (folder / name).is_file()]
    if not candidates:
        return None
    good, problems = [], []
    for path in candidates:
        try:
            state = load_checkpoint(path)
            check_resumable(state, path)
        except CheckpointError as err:
            log.warning("skipping a damaged checkpoint: %s", err)
            problems.append(str(err))
            continue
        good.append((path, state))
    if not good:
        raise CheckpointError(
            "no usable checkpoint in "
            f"{folder}:\n  - " + "\n  - ".join(problems) + "\nRestore a backup of the "
            "directory, or start a new run (another hydra.run.dir, without resume=true)"
        )
    # Furthest into training wins; on a tie, the first of last, previous, best.
    return max(good, key=lambda item: item[1]["step"])
