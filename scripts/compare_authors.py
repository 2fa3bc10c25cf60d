"""Our Sudo rm -rf networks against the authors' classes: parameter counts and outputs.

    python scripts/compare_authors.py --authors-repo /path/to/sudo_rm_rf          # all presets
    python scripts/compare_authors.py --authors-repo DIR --presets sudormrf_gc_1x --seconds 4

``--authors-repo`` is a checkout of etzinis/sudo_rm_rf (the directory that holds
``sudo_rm_rf/dnn/models/``; or set ``UGR_AUTHORS_REPO``). For each preset the script builds
the authors' class with the preset's arguments (seeded random weights, norms and slopes
perturbed so that every parameter matters), loads its state dict into ours with
``load_authors_state_dict``, and runs both on the same random mixtures. It prints the
parameter counts and the relative error ``||ours - theirs|| / ||theirs||`` of the outputs.
Nothing of the authors' code is copied here: it is imported from the checkout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ugr_experiments.models import (  # noqa: E402
    PRESETS,
    build_model,
    load_authors_state_dict,
    resolve,
)

# Our model -> (the authors' module file, class name).
AUTHORS_CLASSES = {
    "sudormrf": ("sudormrf.py", "SuDORMRF"),
    "sudormrf_improved": ("improved_sudormrf.py", "SuDORMRF"),
    "sudormrf_gc": ("groupcomm_sudormrf_v2.py", "GroupCommSudoRmRf"),
}
DEFAULT_PRESETS = [p for p in PRESETS if resolve(p, {})[0] in AUTHORS_CLASSES]


def _load_module(repo: Path, filename: str) -> ModuleType:
    path = repo / "sudo_rm_rf" / "dnn" / "models" / filename
    if not path.is_file():
        raise SystemExit(f"no {path}: --authors-repo must be a checkout of etzinis/sudo_rm_rf")
    spec = importlib.util.spec_from_file_location(f"authors_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(repo: Path, preset: str, seconds: float = 4.0, batch: int = 1) -> dict[str, Any]:
    """Counts and the output relative error of our ``preset`` against the authors' class."""
    model_name, sizes = resolve(preset, {})
    filename, cls_name = AUTHORS_CLASSES[model_name]
    torch.manual_seed(0)
    with warnings.catch_warnings():  # their xavier_uniform (deprecated name)
        warnings.simplefilter("ignore")
        theirs = getattr(_load_module(repo, filename), cls_name)(**sizes).eval()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if any(k in name for k in ("norm", "act", "ln", "mask_net.0", "TAC_", "m.")):
                p.add_(0.1 * torch.randn_like(p))
    ours = load_authors_state_dict(build_model(preset), theirs).eval()
    mix = torch.randn(batch, 1, round(seconds * 8000))
    with torch.inference_mode():
        ref, est = theirs(mix), ours(mix)
    return {
        "preset": preset,
        "params_ours": sum(p.numel() for p in ours.parameters()),
        "params_authors": sum(p.numel() for p in theirs.parameters()),
        "rel_error": float((est - ref).norm() / ref.norm()),
        "max_abs_error": float((est - ref).abs().max()),
        "shape": list(est.shape),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--authors-repo", type=Path, default=os.environ.get("UGR_AUTHORS_REPO"))
    p.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS, choices=DEFAULT_PRESETS)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.authors_repo is None:
        p.error("--authors-repo (or UGR_AUTHORS_REPO) is required")
    results = []
    print(f"{'preset':24} {'ours':>10} {'authors':>10} {'rel error':>10} {'max abs':>10}")
    for preset in args.presets:
        r = compare(args.authors_repo, preset, args.seconds, args.batch)
        results.append(r)
        print(
            f"{preset:24} {r['params_ours']:>10,} {r['params_authors']:>10,} "
            f"{r['rel_error']:>10.2e} {r['max_abs_error']:>10.2e}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
