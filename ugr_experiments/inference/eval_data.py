"""Which mixtures ``ugr-evaluate`` scores a model on: the data set, its seed and batch size.

By default the run's own data set and seed (hence its test mixtures); ``--dataset`` picks a
config under ``conf/dataset/`` or a YAML file, ``--manifest`` points the data set at
data_prep manifests, and ``seed=N`` / ``dataset.<key>=<value>`` override single values.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ugr_experiments.cli import CONF_DIR
from ugr_experiments.data.manifest import DIGEST_KEY, check_recorded_manifests
from ugr_experiments.inference.export import LoadedModel

__all__ = [
    "CONF_DIR",
    "DATASET_OF_GROUPS",
    "EvalOptions",
    "apply_manifests",
    "check_dataset",
    "describe",
    "eval_config",
    "load_dataset_config",
    "manifest_groups",
    "parse_overrides",
]

log = logging.getLogger(__name__)

# The dataset config a manifest's groups select when the model's own dataset has no manifests.
DATASET_OF_GROUPS = {
    ("environmental",): "esc50",
    ("speech",): "speech",
    ("environmental", "speech"): "cross",
}


def load_dataset_config(spec: str) -> dict[str, Any]:
    """A dataset config: a name under ``conf/dataset/`` or a YAML file, resolved to plain values.

    The YAML file may also be a whole config (e.g. a run's ``config.yaml``): its ``dataset``.

    ``${paths.manifests}`` in it resolves as in training (environment variable
    ``UGR_MANIFESTS``, else ``./manifests``).
    """
    from omegaconf import DictConfig, OmegaConf  # only the entry points touch OmegaConf

    from ugr_experiments.config.plain import plain_dict

    path = Path(spec)
    if not path.is_file() and not (CONF_DIR / "config.yaml").is_file():
        raise ValueError(
            f"--dataset {spec!r}: no such YAML file, and no config tree at {CONF_DIR} to look "
            "the name up in (install the project editable, or give a dataset YAML file)"
        )
    if not path.is_file():
        path = CONF_DIR / "dataset" / f"{spec}.yaml"
        if not path.is_file():
            names = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml"))
            raise ValueError(
                f"--dataset {spec!r} is neither a YAML file nor a config under {CONF_DIR}/dataset; "
                f"choose from {names} or give the path of a dataset YAML file"
            )
    node = OmegaConf.load(path)
    if "dataset" in node and "name" not in node:  # a whole config, e.g. a run's config.yaml
        node = node.dataset
    root = OmegaConf.load(CONF_DIR / "config.yaml")
    assert isinstance(root, DictConfig)  # the project's config.yaml is a mapping
    merged = OmegaConf.create({"paths": root.get("paths", {}), "dataset": node})
    return plain_dict(merged.dataset, resolve=True)


def manifest_groups(path: str) -> list[str]:
    """The groups (speech / environmental) a manifest lists."""
    from ugr_experiments.data.manifest import read_manifest

    return sorted(set(read_manifest(path).table["group"]))


def apply_manifests(dataset: dict[str, Any], manifests: Sequence[str], chosen: bool) -> dict:
    """Point ``dataset.manifests.<group>`` at each manifest, with the root it records.

    A dataset without manifests (synthetic) becomes the corpus dataset of the manifests'
    groups (esc50, speech or cross; ``--dataset random_mix`` for the other), keeping the
    model's segment length, number of sources and SNR range, unless ``--dataset`` chose one.
    """
    from ugr_experiments.data.corpus import GROUPS_OF

    groups = {m: manifest_groups(m) for m in manifests}
    found = tuple(sorted({g for gs in groups.values() for g in gs}))
    if "manifests" not in dataset and not chosen:
        if found not in DATASET_OF_GROUPS:
            raise ValueError(f"manifests {list(manifests)} hold groups {found}; pass --dataset")
        dataset = {**load_dataset_config(DATASET_OF_GROUPS[found]), **_mixing(dataset)}
    allowed = GROUPS_OF.get(dataset.get("name", ""), ())
    if set(found) - set(allowed):
        raise ValueError(
            f"dataset {dataset.get('name')!r} reads {list(allowed)} manifests, but "
            f"{list(manifests)} hold {list(found)}: pass a matching --dataset (esc50, speech, "
            "cross, random_mix)"
        )
    dataset["manifests"] = dict(dataset.get("manifests") or {})
    dataset["roots"] = dict(dataset.get("roots") or {})
    digests = dict(dataset.get(DIGEST_KEY) or {})
    for path, gs in groups.items():
        for group in gs:
            dataset["manifests"][group], dataset["roots"][group] = path, None
            digests.pop(group, None)  # the run's record no longer applies to this group
    if DIGEST_KEY in dataset:
        dataset[DIGEST_KEY] = digests
    return dataset


def _mixing(dataset: dict[str, Any]) -> dict[str, Any]:
    """The mixing options a corpus dataset inherits from the model's own dataset."""
    keys = ("segment_seconds", "n_sources", "snr_db")
    return {k: dataset[k] for k in keys if k in dataset}


def parse_overrides(overrides: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``KEY=VALUE`` pairs (values parsed as YAML); keys ``seed`` or ``dataset.<...>``."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not (key == "seed" or key.startswith("dataset.")):
            raise ValueError(
                f"override {item!r}: expected seed=N or dataset.<key>=<value> "
                "(e.g. dataset.n_test=500); use --dataset to pick another data set"
            )
        parsed.append((key.split("."), yaml.safe_load(value)))
    return parsed


def _set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


@dataclass
class EvalOptions:
    """What ``ugr-evaluate`` evaluates on and how; None means the run's own value."""

    dataset: str | None = None
    manifests: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    split: str = "test"
    batch_size: int | None = None
    workers: int = 0
    epoch: int | None = None
    progress: bool = True
    overwrite: bool = False


def _run_cwd(loaded: LoadedModel) -> Path | None:
    """Where the run of ``loaded`` was started (Hydra's record), if its directory says so."""
    hydra = loaded.path.parent.parent / ".hydra" / "hydra.yaml"
    try:
        cwd = yaml.safe_load(hydra.read_text(encoding="utf-8"))["hydra"]["runtime"]["cwd"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return Path(cwd) if isinstance(cwd, str) else None


def _run_dataset(run: dict[str, Any], loaded: LoadedModel) -> dict[str, Any]:
    """The run's dataset config, with its manifests where the run read them.

    Runs record absolute manifest paths (``data.manifest.record_manifests``); older runs
    recorded paths relative to the directory they were started in, which Hydra keeps.
    """
    dataset = copy.deepcopy(run["dataset"])
    relative = {
        g: p for g, p in (dataset.get("manifests") or {}).items() if p and not Path(p).is_absolute()
    }
    if relative:
        cwd = _run_cwd(loaded)
        if cwd is None:
            log.warning(
                "%s records relative manifest paths %s and not where the run started: they are "
                "read from the current directory (pass --manifest to be sure)",
                loaded.path,
                relative,
            )
        else:
            dataset["manifests"].update({g: str(cwd / p) for g, p in relative.items()})
    return dataset


def _origins(dataset: dict[str, Any], opts: EvalOptions) -> dict[str, str]:
    """Where each manifest of the evaluation comes from, for the user to see."""
    given = set(opts.manifests)
    default = f"--dataset {opts.dataset}" if opts.dataset else "the run's"
    return {
        group: "--manifest" if path in given else default
        for group, path in (dataset.get("manifests") or {}).items()
    }


def describe(cfg: dict[str, Any], split: str, n_items: int) -> str:
    """One line saying what is evaluated: data set, manifests and where from, split, size."""
    dataset = cfg["dataset"]
    origins = cfg.get("manifest_origin") or {}
    fallback = "the run's"
    manifests = ", ".join(
        f"{group}={path} ({origins.get(group, fallback)})"
        for group, path in (dataset.get("manifests") or {}).items()
    )
    return (
        f"evaluating on dataset {dataset.get('name')}"
        + (f" (manifests: {manifests})" if manifests else "")
        + f", split {split}, {n_items} mixtures, seed {cfg['seed']}"
    )


def eval_config(loaded: LoadedModel, opts: EvalOptions) -> dict[str, Any]:
    """``{"dataset", "seed", "batch_size", "epoch", "manifest_origin"}`` of this evaluation.

    The run's own manifests are checked against the digests it recorded (a changed or lost
    manifest is refused, naming it); see EvalOptions for the choices.
    """
    run = loaded.train_config or {}
    if opts.dataset:
        dataset = load_dataset_config(opts.dataset)
    elif "dataset" in run:
        dataset = _run_dataset(run, loaded)
    elif opts.manifests:
        dataset = {}
    else:
        raise ValueError(
            f"{loaded.path} does not record the data set it was trained on; "
            "pass --dataset <name or YAML file> or --manifest <manifest.csv>"
        )
    if opts.manifests:
        dataset = apply_manifests(dataset, opts.manifests, chosen=bool(opts.dataset))
    recorded = dict(dataset.get("manifests") or {})
    cfg: dict[str, Any] = {"dataset": dataset, "seed": int(run.get("seed", 0))}
    for keys, value in parse_overrides(opts.overrides):
        _set(cfg, keys, value)
    dataset = cfg["dataset"]
    if DIGEST_KEY in dataset:  # only the manifests still at the paths the run recorded
        now = dataset.get("manifests") or {}
        digests = dataset[DIGEST_KEY] or {}
        dataset[DIGEST_KEY] = {g: d for g, d in digests.items() if now.get(g) == recorded.get(g)}
        check_recorded_manifests(dataset)
    check_dataset(dataset, loaded)
    batch = opts.batch_size or (run.get("eval") or {}).get("batch_size") or 16
    epoch = opts.epoch if opts.epoch is not None else loaded.epoch
    return {
        **cfg,
        "batch_size": int(batch),
        "epoch": -1 if epoch is None else int(epoch),
        "manifest_origin": _origins(dataset, opts),
    }


def check_dataset(dataset: dict[str, Any], loaded: LoadedModel) -> None:
    """Mixtures at the model's rate, with the model's number of sources (in place)."""
    rate = dataset.get("sample_rate")
    if rate != loaded.sample_rate:
        log.info("dataset.sample_rate %s -> %d (the model's rate)", rate, loaded.sample_rate)
        dataset["sample_rate"] = loaded.sample_rate
    if int(dataset.get("n_sources", loaded.num_sources)) != loaded.num_sources:
        raise ValueError(
            f"the data set mixes {dataset['n_sources']} sources but the model separates "
            f"{loaded.num_sources}; set dataset.n_sources={loaded.num_sources}"
        )
