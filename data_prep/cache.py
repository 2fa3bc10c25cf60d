"""A manifest's files resampled once to the model's rate -> a cache folder and its own manifest.

Training then reads 8 kHz mono files and never resamples (resampling with soxr, the same
resampler the loaders use, see ``ugr_experiments.data.audio``). Each cached file keeps its
relative path (suffix ``.wav``); the new manifest has the same rows and metadata, with the
cache folder as its root and the new rate, frames and channels. Files are 16-bit PCM, or
32-bit float where resampling overshoots full scale (never clipped). Every file is written
through a temporary name and a rename; a rerun skips the files already cached, so an
interrupted run resumes.

Example::

    ugr-prep-cache --manifest manifests/esc50.csv --cache-dir /data/cache/esc50_8k \\
        --output manifests/esc50_8k.csv
    python train.py dataset=esc50 dataset.manifests.environmental=manifests/esc50_8k.csv
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf
from tqdm import tqdm

from data_prep.common import PrepError, command_line, run_main, save
from ugr_experiments.data.audio import AudioDecodeError, load_file, probe
from ugr_experiments.data.manifest import read_manifest

PROG = "ugr-prep-cache"


def cache_one(source: str, target: str, rate: int) -> tuple[int, str | None]:
    """Resample ``source`` into ``target`` (unless it is already there); (frames, error)."""
    out = Path(target)
    if out.is_file():
        info = sf.info(str(out))
        if info.samplerate == rate and info.channels == 1:
            return int(info.frames), None
    try:
        x = np.array(load_file(source, rate, probe(source)))
    except AudioDecodeError as err:
        return 0, str(err)
    subtype = "PCM_16" if np.abs(x).max(initial=0.0) < 1.0 else "FLOAT"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), x, rate, subtype=subtype, format="WAV")
    os.replace(tmp, out)
    return len(x), None


def prepare_cache(
    manifest_path: str | Path,
    cache_dir: str | Path,
    output: str | Path,
    rate: int = 8000,
    jobs: int = 1,
    progress: bool = True,
    command: str = PROG,
) -> None:
    """Resample every row of the manifest into ``cache_dir`` and write the new manifest."""
    try:
        manifest = read_manifest(manifest_path)
    except FileNotFoundError as err:
        raise PrepError(f"{err}; write it first with ugr-prep-esc50 or ugr-prep-speech") from None
    if not manifest.root.is_dir():
        raise PrepError(f"the corpus root {manifest.root} of {manifest_path} does not exist")
    cache = Path(cache_dir).expanduser().resolve()
    if cache == manifest.root.resolve():
        raise PrepError("--cache-dir must differ from the corpus root (files would be replaced)")
    table = manifest.table.copy()
    table["path"] = [str(PurePosixPath(p).with_suffix(".wav")) for p in table["path"]]
    sources = [str(manifest.absolute(p)) for p in manifest.table["path"]]
    targets = [str(cache / p) for p in table["path"]]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = list(
            tqdm(
                pool.map(cache_one, sources, targets, [rate] * len(sources), chunksize=16),
                total=len(sources),
                desc="resampling",
                unit="file",
                disable=not progress,
                file=sys.stderr,
            )
        )
    failed = [(s, e) for s, (_, e) in zip(sources, results, strict=True) if e]
    for source, error in failed:
        print(f"  skipped {source}: {error}", file=sys.stderr)
    ok = [e is None for _, e in results]
    frames = np.array([n for n, _ in results], dtype=np.int64)
    table = table.assign(sample_rate=rate, frames=frames, channels=1, duration=frames / rate)
    corpus = f"{manifest.header.get('corpus', '')} at {rate} Hz, cached from {manifest.root}"
    save(table[ok].reset_index(drop=True), Path(output), cache, corpus, command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Resample a manifest's files once to the model's rate into a cache folder "
        "and write a manifest of the cache.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--manifest", required=True, help="a manifest written by data_prep")
    parser.add_argument("--cache-dir", required=True, help="where the resampled files go")
    parser.add_argument("--output", required=True, help="the manifest of the cache to write")
    parser.add_argument("--sample-rate", type=int, default=8000, help="target rate (default 8000)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _run(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    if Path(args.output).resolve() == Path(args.manifest).resolve():
        raise PrepError("--output must differ from --manifest (keep the original manifest)")
    prepare_cache(
        args.manifest,
        args.cache_dir,
        args.output,
        args.sample_rate,
        args.jobs,
        not args.no_progress,
        command_line(PROG, argv),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``ugr-prep-cache`` (also ``python -m data_prep.cache``)."""
    return run_main(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
