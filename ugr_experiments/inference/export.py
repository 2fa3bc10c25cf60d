"""Weights-only model files, and :func:`load_model`, the one way to get a trained model back.

An export is a ``torch.save`` of a plain dict that ``torch.load(weights_only=True)`` reads (no
pickled classes, no training state)::

    {
        "format": "ugr-experiments/model",   # marks the file
        "format_version": 1,                 # of this layout; newer ones are refused
        "package_version": "0.1.0",          # of ugr-experiments that wrote it
        "model_config": {"name": "sudormrf", "num_sources": 2, ...},  # build_model(**)
        "sample_rate": 8000,                 # the rate the model was trained at (Hz)
        "state_dict": {...},                 # tensors only
        "epoch": 12,                         # the training epoch of the weights (or None)
        "train_config": "<YAML text>",       # the run's resolved config (or None)
    }

``train_config`` is optional metadata (a few kB): with it, ``ugr-evaluate`` can rebuild the
run's own test set from an export alone. :func:`load_model` reads an export, a training
checkpoint (``<run>/checkpoints/*.pt``, which holds ``model`` and ``config``) or a run
directory (its ``checkpoints/best.pt``).

Usage::

    from ugr_experiments.inference.export import load_model
    loaded = load_model("model.pt")            # or a checkpoint, or a run directory
    est = loaded.model(mixture)                # (B, T) -> (B, S, T), at loaded.sample_rate
"""

from __future__ import annotations

import argparse
import logging
import pickle
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ugr_experiments.inference.outputs import (
    OutputError,
    file_mode,
    make_output_dir,
    remove_empty_dirs,
)
from ugr_experiments.models import build_model
from ugr_experiments.training.checkpoint import (
    CheckpointError,
    check_digest,
    code_objects_message,
    save_checkpoint,
    torch_load_detail,
    unsafe_global,
)

__all__ = [
    "EXPORT_FORMAT",
    "FORMAT_VERSION",
    "LoadedModel",
    "ModelFileError",
    "OutputError",
    "export_dict",
    "export_model",
    "file_mode",
    "load_model",
    "main",
    "make_output_dir",
    "package_version",
    "parse_model_file",
    "read_model_file",
    "remove_empty_dirs",
    "resolve_path",
    "strip_wrapper_prefixes",
]

log = logging.getLogger(__name__)

EXPORT_FORMAT = "ugr-experiments/model"
FORMAT_VERSION = 1
# Prefixes that wrappers add to parameter names (DistributedDataParallel, torch.compile).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file, the problem and the fix."""


@dataclass
class LoadedModel:
    """A model ready to run, with what is needed to feed it.

    Attributes:
        model: the network, in eval mode, on the requested device.
        sample_rate: the rate (Hz) the model was trained at; inputs must be at this rate.
        model_config: ``build_model`` arguments, ``name`` included.
        epoch: the training epoch the weights come from (None if unknown).
        train_config: the training run's resolved config (None if the file lacks it).
        path: the file the weights were read from.
    """

    model: nn.Module
    sample_rate: int
    model_config: dict[str, Any]
    epoch: int | None
    train_config: dict[str, Any] | None
    path: Path

    @property
    def num_sources(self) -> int:
        return int(self.model_config.get("num_sources", 2))


def package_version() -> str:
    """The installed ugr-experiments version (``"unknown"`` when not installed)."""
    try:
        return metadata.version("ugr-experiments")
    except metadata.PackageNotFoundError:
        return "unknown"


def resolve_path(path: str | Path) -> Path:
    """The model file behind ``path``: itself, or ``checkpoints/best.pt`` of a run directory."""
    path = Path(path)
    if path.is_dir():
        best = path / "checkpoints" / "best.pt"
        if not best.is_file():
            raise ModelFileError(
                f"{path} is a directory without checkpoints/best.pt; pass a run directory "
                "(written by `python train.py`), a checkpoint file or an export (ugr-export)"
            )
        return best
    if not path.is_file():
        raise ModelFileError(f"no model file at {path} (expected an export, a checkpoint or a run)")
    return path


def read_model_file(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with the failures turned into clear messages.

    The SHA-256 ``digest`` that checkpoints and exports carry is checked (and removed): a
    file edited or damaged after it was written is refused.
    """
    corrupted = (
        f"cannot read {path}: not a PyTorch file (torch.save writes a zip archive), or a "
        "corrupted / truncated one. Copy it again, or re-export it with ugr-export"
    )
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as err:
        raise ModelFileError(f"cannot read {path}: {err}") from None
    if not is_zip:
        raise ModelFileError(corrupted)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as err:
        raise ModelFileError(f"cannot read {path}: {err}") from None
    except pickle.UnpicklingError as err:
        if (name := unsafe_global(err)) is not None:
            raise ModelFileError(code_objects_message(path, name)) from None
        raise ModelFileError(f"{corrupted} ({torch_load_detail(err)})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise ModelFileError(f"{corrupted} ({torch_load_detail(err)})") from None
    if not isinstance(data, dict):
        raise ModelFileError(
            f"{path} holds a {type(data).__name__}, not a ugr-experiments export or checkpoint"
        )
    if data.get("digest") is None:
        log.warning("%s carries no checksum (SHA-256 digest): damage or edits go unseen", path)
    try:
        check_digest(data, path)
    except CheckpointError as err:
        raise ModelFileError(str(err)) from None
    return data


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _from_export(data: dict[str, Any], path: Path) -> dict[str, Any]:
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} is a ugr-experiments export of format version {version!r}; this "
            f"ugr-experiments ({package_version()}) reads versions <= {FORMAT_VERSION}: upgrade it"
        )
    train_config = data.get("train_config")
    return {
        "state_dict": data["state_dict"],
        "model_config": dict(data["model_config"]),
        "sample_rate": int(data["sample_rate"]),
        "epoch": data.get("epoch"),
        "train_config": yaml.safe_load(train_config) if train_config else None,
    }


def _from_checkpoint(data: dict[str, Any], path: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(data["config"])
        model_config, sample_rate = dict(cfg["model"]), int(cfg["dataset"]["sample_rate"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise ModelFileError(
            f"{path} looks like a training checkpoint but its config has no usable "
            f"model / dataset.sample_rate ({_first_line(err)})"
        ) from None
    epoch = data.get("epoch")
    return {
        "state_dict": data["model"],
        "model_config": model_config,
        "sample_rate": sample_rate,
        "epoch": int(epoch) if isinstance(epoch, int) else None,
        "train_config": cfg,
    }


def parse_model_file(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The fields of an export or of a training checkpoint, in the export's names."""
    if data.get("format") == EXPORT_FORMAT:
        return _from_export(data, path)
    if isinstance(data.get("model"), dict) and isinstance(data.get("config"), str):
        return _from_checkpoint(data, path)
    keys = sorted(str(k) for k in data)[:12]
    raise ModelFileError(
        f"{path} is not a ugr-experiments export or training checkpoint (top-level keys: "
        f"{keys}); expected a file written by ugr-export or <run>/checkpoints/best.pt"
    )


def strip_wrapper_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Parameter names without the ``module.`` / ``_orig_mod.`` prefixes of DDP / compile.

    A prefix is removed only when every name has it (a model's own ``module`` stays).
    """
    changed = True
    while state and changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix) :]: value for key, value in state.items()}
                changed = True
    return dict(state)


def _build(fields: dict[str, Any], path: Path) -> nn.Module:
    kwargs = dict(fields["model_config"])
    try:
        model = build_model(kwargs.pop("name"), **kwargs)
        model.load_state_dict(strip_wrapper_prefixes(fields["state_dict"]))
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise ModelFileError(
            f"the weights in {path} do not fit its model config {fields['model_config']}: "
            f"{_first_line(err)}"
        ) from None
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model from an export, a training checkpoint or a run directory.

    Args:
        path: an export (``ugr-export``), a checkpoint (``<run>/checkpoints/*.pt``) or a run
            directory (its ``checkpoints/best.pt`` is used).
        device: where to put the model.

    Returns:
        The model in eval mode and its metadata (sample rate, config, epoch).

    Raises:
        ModelFileError: a missing, corrupted or foreign file, or weights that do not fit.
    """
    path = resolve_path(path)
    fields = parse_model_file(read_model_file(path), path)
    model = _build(fields, path).to(device).eval()
    return LoadedModel(
        model=model,
        sample_rate=fields["sample_rate"],
        model_config=fields["model_config"],
        epoch=fields["epoch"],
        train_config=fields["train_config"],
        path=path,
    )


def export_dict(loaded: LoadedModel) -> dict[str, Any]:
    """The export layout (module docstring) of a loaded model; tensors moved to the CPU."""
    state = {k: v.detach().cpu().clone() for k, v in loaded.model.state_dict().items()}
    train_config = loaded.train_config
    return {
        "format": EXPORT_FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": package_version(),
        "model_config": dict(loaded.model_config),
        "sample_rate": int(loaded.sample_rate),
        "state_dict": state,
        "epoch": loaded.epoch,
        "train_config": yaml.safe_dump(train_config, sort_keys=False) if train_config else None,
    }


def export_model(source: str | Path, output: str | Path, overwrite: bool = False) -> Path:
    """Write the weights-only export of ``source`` (checkpoint, run directory or export).

    The file is written atomically (a temporary file, then a rename) and read back once to
    check that it loads with ``weights_only=True``.

    Raises:
        ModelFileError: ``source`` cannot be loaded.
        FileExistsError: ``output`` exists and ``overwrite`` is false.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite (overwrite=True) to replace it")
    if output.is_dir():
        raise IsADirectoryError(f"{output} is a directory; give the path of the file to write")
    loaded = load_model(source)
    save_checkpoint(export_dict(loaded), output)  # the umask's mode, like any other file
    try:
        load_model(output)  # a file that does not load back fails here, not at the user's
    except ModelFileError:
        output.unlink(missing_ok=True)
        raise
    return output


def main(argv: list[str] | None = None) -> None:
    """``ugr-export SOURCE -o FILE``: a small weights-only model file from a checkpoint or run."""
    parser = argparse.ArgumentParser(
        prog="ugr-export",
        description="Write a weights-only model file (state dict, model config, sample rate, "
        "version) from a training checkpoint or a run directory. Load it with "
        "ugr_experiments.inference.export.load_model, ugr-evaluate or ugr-separate.",
    )
    parser.add_argument("source", help="a run directory, a checkpoint (.pt) or an export")
    parser.add_argument("-o", "--output", required=True, help="the file to write, e.g. model.pt")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    args = parser.parse_args(argv)
    try:
        path = export_model(args.source, args.output, args.overwrite)
    except (ModelFileError, OSError) as err:
        sys.exit(f"ugr-export: error: {err}")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
