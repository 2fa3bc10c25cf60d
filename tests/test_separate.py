"""``ugr-separate``: chunked overlap-add, file round trips, and bad inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F
from conftest import TINY, compose_config
from torch import nn

from ugr_experiments.config import to_plain
from ugr_experiments.data.base import mix_sources
from ugr_experiments.inference import separate as sep
from ugr_experiments.inference.export import LoadedModel, export_dict, file_mode, load_model
from ugr_experiments.inference.separate import ChunkPlan, main, rising_ramp, separate_chunked
from ugr_experiments.losses import pit_align, si_sdr
from ugr_experiments.training.checkpoint import save_checkpoint

RATE = 8000


class FilterBank(nn.Module):
    """A local two-source "separator": a moving average and its residual (receptive field
    +-8 samples). With ``swap``, each item's source order depends on its content, as a real
    model's order is arbitrary from one chunk to the next."""

    lcm = 1

    def __init__(self, swap: bool) -> None:
        super().__init__()
        self.swap = swap

    def flips(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs().sum(-1) * 1000).long() % 2 == 1  # (B,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = F.conv1d(x[:, None], torch.ones(1, 1, 17) / 17, padding=8)[:, 0]
        est = torch.stack([low, x - low], 1)  # (B, 2, T)
        if self.swap:
            est = torch.where(self.flips(x)[:, None, None], est.flip(1), est)
        return est


def tiny_loaded(seed: int = 0) -> LoadedModel:
    """The TINY Sudo rm -rf with fixed (seeded random) weights."""
    cfg = to_plain(compose_config(TINY))
    spec = dict(cfg["model"])
    torch.manual_seed(seed)
    from ugr_experiments.models import build_model

    model = build_model(spec.pop("name"), **spec).eval()
    return LoadedModel(model, RATE, cfg["model"], 1, cfg, path=None)


def write_export(path) -> LoadedModel:
    loaded = tiny_loaded()
    save_checkpoint(export_dict(loaded), path)
    return loaded


def known_sources(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A harmonic tone and band-pass noise below 2.5 kHz (resampling 8k <-> 16k is lossless
    for them), mixed as in training. Returns mixture (T,), sources (2, T) at 8 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    tone = sum(np.sin(2 * np.pi * 180 * k * t + rng.uniform(0, 6)) / k for k in range(1, 11))
    tone *= 1 + 0.5 * np.sin(2 * np.pi * 3 * t)
    spec, freq = np.fft.rfft(rng.standard_normal(n)), np.fft.rfftfreq(n, 1 / RATE)
    spec[(freq < 300) | (freq > 2500)] = 0
    return mix_sources(np.stack([tone, np.fft.irfft(spec, n)]), snr_db=2.0)


def aligned_sisdr(est: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-source SI-SDR of the PIT-aligned estimates, in reference order."""
    est, ref = torch.as_tensor(np.asarray(est))[None], torch.as_tensor(np.asarray(ref))[None]
    aligned, _ = pit_align(est.double(), ref.double())
    return si_sdr(aligned, ref.double())[0].numpy()


def seam_jump(x: torch.Tensor, plan: ChunkPlan, length: int) -> float:
    """Largest sample-to-sample step within the cross-fades (and their margins)."""
    starts = plan.starts(length)
    worst = 0.0
    for k in range(len(starts) - 1):
        a = plan.fade_start(k, starts) - plan.context
        seg = x[:, a : a + plan.fade + 2 * plan.context]
        worst = max(worst, float(seg.diff(dim=-1).abs().max()))
    return worst


# ---------------------------------------------------------------------------------------------
# Chunking
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [2001, 5000, 12345, 40000])
def test_chunk_windows_cover_the_input_and_sum_to_one(length):
    plan = ChunkPlan.from_seconds(2.0, 0.1, 0.15, 1000, multiple=40)
    assert plan.hop % 40 == 0 and plan.chunk - plan.hop == 2 * plan.context + plan.fade
    starts = plan.starts(length)
    assert starts[0] == 0 and starts[-1] + plan.chunk == length
    assert all(s % plan.hop == 0 for s in starts[:-1]) and starts == sorted(set(starts))
    total = torch.zeros(length)
    for k, s in enumerate(starts):
        total[s : s + plan.chunk] += plan.window(k, starts)
    torch.testing.assert_close(total, torch.ones(length), atol=1e-6, rtol=0)


def test_raised_cosine_ramps_are_complementary_and_smooth():
    ramp = rising_ramp(100)
    assert torch.all(ramp.diff() > 0) and 0 < ramp[0] < 0.01 and 0.99 < ramp[-1] < 1
    torch.testing.assert_close(ramp + ramp.flip(0), torch.ones(100))  # cos^2 + sin^2
    assert float(ramp.diff().abs().max()) < 1.6 / 100  # no step: at most pi/2 per length


def test_chunk_plan_rejects_too_short_chunks():
    with pytest.raises(ValueError, match="too short .* at least"):
        ChunkPlan.from_seconds(1.0, 0.4, 0.3, 8000)


def test_chunked_equals_whole_input_with_a_local_model_despite_source_swaps():
    """Exact away from (and at) the seams for a model whose receptive field fits in the
    context; the content-dependent source order must not swap sources at the seams."""
    rng = np.random.default_rng(0)
    t = np.arange(20000) / 1000
    x = torch.tensor(np.sin(2 * np.pi * 7 * t) + 0.3 * rng.standard_normal(t.size)).float()
    plan = ChunkPlan.from_seconds(2.0, 0.05, 0.1, 1000)
    swapping = FilterBank(swap=True)
    chunks = torch.stack([x[s : s + plan.chunk] for s in plan.starts(len(x))])
    assert 0 < int(swapping.flips(chunks).sum()) < len(chunks)  # some chunks do swap
    whole = separate_chunked(FilterBank(swap=False), x, None)
    out = separate_chunked(swapping, x, plan, batch_size=3)
    if swapping.flips(chunks)[0]:
        out = out.flip(0)  # the first chunk's order is the output's order
    torch.testing.assert_close(out, whole, atol=1e-5, rtol=0)


def test_without_alignment_the_seams_jump(monkeypatch):
    """The seam check has teeth: skipping the alignment makes sources swap at seams."""
    x = torch.tensor(np.random.default_rng(1).standard_normal(20000)).float()
    plan = ChunkPlan.from_seconds(2.0, 0.05, 0.1, 1000)
    whole = separate_chunked(FilterBank(swap=False), x, None)
    aligned = separate_chunked(FilterBank(swap=True), x, plan)
    monkeypatch.setattr(sep, "align_to", lambda current, previous, start: current)
    unaligned = separate_chunked(FilterBank(swap=True), x, plan)
    bound = 1.01 * float(whole.diff(dim=-1).abs().max())
    assert seam_jump(aligned, plan, len(x)) <= bound
    assert min(aligned_sisdr(aligned, whole)) > 60
    assert min(aligned_sisdr(unaligned, whole)) < 10


def test_chunked_sudormrf_matches_whole_input_without_seams():
    """Sudo rm -rf normalises over the whole input (GroupNorm), so chunks are not bit-exact:
    chunked and whole-input estimates agree closely, with no jump at the seams."""
    loaded = tiny_loaded()
    mix, _ = known_sources(6.0)
    x = torch.from_numpy(mix)
    plan = ChunkPlan.from_seconds(1.5, 0.25, 0.25, RATE, sep.model_multiple(loaded.model))
    whole = separate_chunked(loaded.model, x, None)
    out = separate_chunked(loaded.model, x, plan, batch_size=2)
    aligned, _ = pit_align(out[None], whole[None])
    assert min(aligned_sisdr(out, whole)) > 25
    inner = slice(plan.chunk, len(x) - plan.chunk)  # far from the input's own edges too
    assert min(si_sdr(aligned[0, :, inner], whole[:, inner])) > 25
    assert seam_jump(aligned[0], plan, len(x)) <= 1.2 * float(whole.diff(dim=-1).abs().max())


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def write_stereo_16k(path, mix: np.ndarray, subtype: str = "PCM_16") -> None:
    """The mixture upsampled to 16 kHz, as two channels of different gains."""
    up = soxr.resample(mix.astype(np.float64), RATE, 16000, quality="HQ")
    up = 0.9 * up / np.abs(up).max()
    sf.write(path, np.stack([0.6 * up, 0.3 * up], axis=1), 16000, subtype=subtype)


def test_separated_files_match_the_in_memory_model(tmp_path):
    loaded = write_export(tmp_path / "model.pt")
    mix, sources = known_sources(2.0)
    write_stereo_16k(tmp_path / "song.flac", mix)
    main([str(tmp_path / "model.pt"), str(tmp_path / "song.flac"), "-o", str(tmp_path / "out")])
    paths = [tmp_path / "out" / f"song_s{k}.wav" for k in (1, 2)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    assert all(p.stat().st_mode & 0o777 == file_mode() for p in paths)  # not mkstemp's 0600
    est = []
    for path in paths:
        data, rate = sf.read(path, dtype="float32")
        assert rate == RATE and data.shape == (len(mix),)
        est.append(data)
    with torch.no_grad():
        memory = loaded.model(torch.from_numpy(mix)[None])[0].numpy()
    expected = aligned_sisdr(memory, sources)
    np.testing.assert_allclose(aligned_sisdr(np.stack(est), sources), expected, atol=0.05)
    assert min(aligned_sisdr(np.stack(est), memory)) > 40  # only resampling + 16-bit input


def test_keep_rate_writes_at_the_input_rate_and_length(tmp_path):
    write_export(tmp_path / "model.pt")
    mix, sources = known_sources(1.0)
    write_stereo_16k(tmp_path / "a.wav", mix, subtype="FLOAT")
    args = [str(tmp_path / "model.pt"), str(tmp_path / "a.wav"), "-o", str(tmp_path / "o")]
    main(args + ["--keep-rate", "--format", "flac", "--no-progress"])
    main(args + ["--no-progress", "--format", "wav"])
    for k in (1, 2):
        info = sf.info(tmp_path / "o" / f"a_s{k}.flac")
        assert (info.samplerate, info.frames, info.channels) == (16000, 2 * len(mix), 1)
    at_input_rate = np.stack([sf.read(tmp_path / "o" / f"a_s{k}.flac")[0] for k in (1, 2)])
    at_model_rate = [sf.read(tmp_path / "o" / f"a_s{k}.wav")[0] for k in (1, 2)]
    expected = np.stack([soxr.resample(x, RATE, 16000, quality="HQ") for x in at_model_rate])
    assert min(aligned_sisdr(at_input_rate, expected)) > 60  # resampled back, 24-bit


def test_folder_input_long_file_and_denormalisation(tmp_path):
    write_export(tmp_path / "model.pt")
    (tmp_path / "in" / "sub").mkdir(parents=True)
    mix, _ = known_sources(3.0)
    sf.write(tmp_path / "in" / "quiet.wav", 0.01 * mix, RATE)
    write_stereo_16k(tmp_path / "in" / "sub" / "deep.flac", mix)
    (tmp_path / "in" / "notes.txt").write_text("not audio, not listed")
    model = str(tmp_path / "model.pt")
    main(
        [model, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--recursive"]
        + ["--chunk-seconds", "1", "--context-seconds", "0.1", "--crossfade-seconds", "0.1"]
    )
    names = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*"))
    assert names == ["quiet_s1.wav", "quiet_s2.wav", "sub/deep_s1.wav", "sub/deep_s2.wav"]
    est = np.stack([sf.read(tmp_path / "out" / f"quiet_s{k}.wav")[0] for k in (1, 2)])
    with torch.no_grad():  # mix has std 1: the estimates come back at the input's scale
        memory = 0.01 * load_model(model).model(torch.from_numpy(mix)[None])[0].numpy()
    aligned, _ = pit_align(torch.from_numpy(est)[None], torch.from_numpy(memory)[None].double())
    np.testing.assert_allclose(aligned[0].std(-1), memory.std(-1), rtol=0.05)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_only_unreadable_inputs_write_nothing(tmp_path):
    write_export(tmp_path / "model.pt")
    (tmp_path / "bad.wav").write_text("hello, I am text\n")
    args = [str(tmp_path / "model.pt"), str(tmp_path / "bad.wav")]
    with pytest.raises(SystemExit, match="bad.wav is not an audio file .* nothing was written"):
        main(args + ["-o", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_unreadable_files_in_a_folder_are_listed_and_the_others_separated(tmp_path, capsys):
    """One bad file among good ones: the good ones are separated, the bad ones named, exit 1."""
    write_export(tmp_path / "model.pt")
    mix, _ = known_sources(0.5)
    (tmp_path / "in").mkdir()
    for name in ("a.wav", "c.wav"):
        sf.write(tmp_path / "in" / name, mix, RATE)
    (tmp_path / "in" / "b.wav").write_text("hello, I am text\n")
    (tmp_path / "in" / "d.flac").write_bytes(b"fLaC" + bytes(64))
    args = [str(tmp_path / "model.pt"), str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as info:
        main(args + ["--no-progress"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "2 of 4 input(s) failed" in err and "b.wav" in err and "d.flac" in err
    assert "a_s1.wav" not in err
    written = sorted(os.listdir(tmp_path / "out"))
    assert written == ["a_s1.wav", "a_s2.wav", "c_s1.wav", "c_s2.wav"]


def test_bad_model_files_are_refused(tmp_path):
    mix, _ = known_sources(0.5)
    sf.write(tmp_path / "good.wav", mix, RATE)
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 truncated zip")
    torch.save({"state": torch.zeros(2)}, tmp_path / "other.pt")
    for name, message in [("model.pt", "cannot read"), ("other.pt", "not a ugr-experiments")]:
        with pytest.raises(SystemExit, match=f"ugr-separate: error: .*{message}"):
            main([str(tmp_path / name), str(tmp_path / "good.wav"), "-o", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_unwritable_output_folder_is_refused(tmp_path):
    write_export(tmp_path / "model.pt")
    mix, _ = known_sources(0.5)
    sf.write(tmp_path / "good.wav", mix, RATE)
    (tmp_path / "file").write_text("a file, not a folder")
    args = [str(tmp_path / "model.pt"), str(tmp_path / "good.wav"), "-o"]
    with pytest.raises(SystemExit, match="cannot write to the output folder .*file/out"):
        main(args + [str(tmp_path / "file" / "out")])
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(SystemExit, match="cannot write to the output folder"):
            main(args + [str(tmp_path / "ro" / "out")])


def test_existing_outputs_need_overwrite(tmp_path):
    write_export(tmp_path / "model.pt")
    mix, _ = known_sources(0.5)
    sf.write(tmp_path / "x.wav", mix, RATE)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x_s2.wav").write_bytes(b"mine")
    args = [str(tmp_path / "model.pt"), str(tmp_path / "x.wav"), "-o", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="1 output file.* exist.*--overwrite"):
        main(args)
    assert sorted(os.listdir(tmp_path / "out")) == ["x_s2.wav"]
    assert (tmp_path / "out" / "x_s2.wav").read_bytes() == b"mine"
    main(args + ["--overwrite"])
    assert sf.info(tmp_path / "out" / "x_s2.wav").samplerate == RATE


def test_inputs_that_would_share_outputs_are_refused(tmp_path):
    write_export(tmp_path / "model.pt")
    mix, _ = known_sources(0.5)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", mix, RATE)
    sf.write(tmp_path / "in" / "a.flac", mix, RATE)
    with pytest.raises(SystemExit, match="several inputs would write"):
        main([str(tmp_path / "model.pt"), str(tmp_path / "in"), "-o", str(tmp_path / "o")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no audio files .* in .*empty"):
        main([str(tmp_path / "model.pt"), str(tmp_path / "empty"), "-o", str(tmp_path / "o2")])
    with pytest.raises(SystemExit, match="input .*nowhere.wav does not exist"):
        main([str(tmp_path / "model.pt"), str(tmp_path / "nowhere.wav"), "-o", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


def test_a_failed_write_leaves_no_partial_outputs(tmp_path, monkeypatch):
    write_export(tmp_path / "model.pt")
    mix, _ = known_sources(0.5)
    sf.write(tmp_path / "x.wav", mix, RATE)
    real_write, calls = sf.write, []

    def failing_write(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_write(path, *args, **kwargs)

    monkeypatch.setattr(sf, "write", failing_write)
    with pytest.raises(SystemExit, match="No space left"):
        main([str(tmp_path / "model.pt"), str(tmp_path / "x.wav"), "-o", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()  # no source file, no temporary file, no empty folder


def test_python_api_loads_the_export(tmp_path):
    write_export(tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    mix, _ = known_sources(0.5)
    est = sep.separate_waveform(loaded, 3.0 * mix + 0.2, None)
    assert est.shape == (2, len(mix)) and est.dtype == np.float32
    with torch.no_grad():  # mix has mean 0 and std 1: normalisation undoes the 3x and the 0.2
        ref = loaded.model(torch.from_numpy(mix)[None])[0].numpy()
    np.testing.assert_allclose(est, 3.0 * ref, atol=1e-4 * np.abs(ref).max(), rtol=0)


def test_prints_the_real_time_factor(tmp_path, capsys):
    write_export(tmp_path / "model.pt")
    mix, _ = known_sources(1.5)
    sf.write(tmp_path / "a.wav", mix, RATE)
    sf.write(tmp_path / "b.wav", mix[:4000], RATE)
    main([str(tmp_path / "model.pt"), str(tmp_path), "-o", str(tmp_path / "out"), "--no-progress"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("separated 2.0 s of audio in ") and "(real-time factor)" in line
    assert float(line.split(": ")[1].split()[0]) > 0
