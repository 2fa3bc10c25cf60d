"""Weights-only export files and ``load_model`` (exports, checkpoints, run directories)."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import TINY, compose_config

from ugr_experiments.config import to_plain
from ugr_experiments.inference.export import (
    EXPORT_FORMAT,
    FORMAT_VERSION,
    ModelFileError,
    export_model,
    load_model,
    main,
    strip_wrapper_prefixes,
)
from ugr_experiments.models import build_model
from ugr_experiments.training.checkpoint import save_checkpoint


def tiny_config() -> dict:
    return to_plain(compose_config(TINY))


def fake_run(run_dir, epoch: int = 3, seed: int = 0):
    """A run directory whose best.pt has the layout training writes (fixed random weights)."""
    cfg = tiny_config()
    spec = dict(cfg["model"])
    torch.manual_seed(seed)
    model = build_model(spec.pop("name"), **spec)
    optimizer = torch.optim.Adam(model.parameters())
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "step": 10,
        "config": yaml.safe_dump(cfg, sort_keys=False),
    }
    save_checkpoint(state, run_dir / "checkpoints" / "best.pt")
    return model.eval(), cfg


def test_export_is_small_weights_only_and_equivalent(tmp_path):
    model, cfg = fake_run(tmp_path / "run")
    out = export_model(tmp_path / "run", tmp_path / "model.pt")
    data = torch.load(out, weights_only=True)
    assert data["format"] == EXPORT_FORMAT and data["format_version"] == FORMAT_VERSION
    assert data["sample_rate"] == 8000 and data["epoch"] == 3
    assert data["model_config"] == cfg["model"]
    assert "optimizer" not in data and isinstance(data["package_version"], str)
    assert out.stat().st_size < (tmp_path / "run" / "checkpoints" / "best.pt").stat().st_size
    loaded = load_model(out)
    assert not loaded.model.training and loaded.num_sources == 2
    assert loaded.train_config["seed"] == cfg["seed"]
    x = torch.randn(2, 1000)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)


def test_load_model_reads_checkpoint_run_dir_and_export_alike(tmp_path):
    fake_run(tmp_path / "run")
    export_model(tmp_path / "run", tmp_path / "model.pt")
    paths = [tmp_path / "run", tmp_path / "run" / "checkpoints" / "best.pt", tmp_path / "model.pt"]
    states = [load_model(p).model.state_dict() for p in paths]
    for state in states[1:]:
        assert all(torch.equal(state[k], states[0][k]) for k in states[0])
    assert load_model(tmp_path / "run").path.name == "best.pt"


def test_export_refuses_to_overwrite(tmp_path):
    fake_run(tmp_path / "run")
    (tmp_path / "model.pt").write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_model(tmp_path / "run", tmp_path / "model.pt")
    assert (tmp_path / "model.pt").read_bytes() == b"keep me"
    export_model(tmp_path / "run", tmp_path / "model.pt", overwrite=True)
    assert load_model(tmp_path / "model.pt").epoch == 3


def test_wrapper_prefixes_are_stripped():
    state = {"_orig_mod.module.a": 1, "_orig_mod.module.b": 2}
    assert strip_wrapper_prefixes(state) == {"a": 1, "b": 2}
    mixed = {"module.a": 1, "b": 2}  # a model's own submodule called "module" is kept
    assert strip_wrapper_prefixes(mixed) == mixed


def _bad_files(tmp_path):
    model, cfg = fake_run(tmp_path / "run")
    good = export_model(tmp_path / "run", tmp_path / "good.pt")
    raw = good.read_bytes()
    (tmp_path / "text.pt").write_text("this is not a model\n")
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save(model, tmp_path / "pickled.pt")
    # Files written by hand or by another tool (no digest to check).
    future = torch.load(good, weights_only=True) | {"format_version": FORMAT_VERSION + 1}
    torch.save(future | {"digest": None}, tmp_path / "future.pt")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    cfg["model"]["num_blocks"] = 3
    torch.save(ckpt | {"config": yaml.safe_dump(cfg), "digest": None}, tmp_path / "mismatch.pt")
    (tmp_path / "empty_dir").mkdir()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("text.pt", r"not a PyTorch file \(torch.save writes a zip archive\)"),
        ("truncated.pt", "corrupted / truncated"),
        ("foreign.pt", r"not a ugr-experiments export or training checkpoint .*'weights'"),
        ("pickled.pt", r"holds code objects \(.*\).*refused for safety"),
        ("future.pt", "format version 2"),
        ("mismatch.pt", "do not fit its model config"),
        ("empty_dir", "without checkpoints/best.pt"),
        ("missing.pt", "no model file at"),
    ],
)
def test_bad_model_files_give_clear_messages(tmp_path, name, message):
    _bad_files(tmp_path)
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / name)


def test_cli_exports_and_reports_errors(tmp_path, capsys):
    fake_run(tmp_path / "run")
    main([str(tmp_path / "run"), "-o", str(tmp_path / "m.pt")])
    assert "wrote" in capsys.readouterr().out and load_model(tmp_path / "m.pt").epoch == 3
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(SystemExit, match="ugr-export: error: cannot read .*junk.pt"):
        main([str(tmp_path / "junk.pt"), "-o", str(tmp_path / "out.pt")])
    assert not (tmp_path / "out.pt").exists()
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        main([str(tmp_path / "run"), "-o", str(tmp_path / "m.pt")])


# ---------------------------------------------------------------------------------------------
# Issue 13: digests, code objects, file modes
# ---------------------------------------------------------------------------------------------


def _edit_a_weight(path) -> None:
    """Change one weight and save the file again, keeping its (now stale) digest."""
    data = torch.load(path, weights_only=True)
    weights = data["state_dict"] if "state_dict" in data else data["model"]
    name = next(iter(weights))
    weights[name] = weights[name] + 1.0
    torch.save(data, path)


def test_edited_checkpoints_and_exports_fail_their_digest(tmp_path, capsys):
    fake_run(tmp_path / "run")
    export_model(tmp_path / "run", tmp_path / "model.pt")
    _edit_a_weight(tmp_path / "model.pt")
    _edit_a_weight(tmp_path / "run" / "checkpoints" / "best.pt")
    for source in (tmp_path / "model.pt", tmp_path / "run"):
        with pytest.raises(
            ModelFileError, match=r"is corrupt: .*no longer match the checksum \(SHA-256 digest\)"
        ):
            load_model(source)
    with pytest.raises(SystemExit, match="ugr-export: error: .*best.pt is corrupt"):
        main([str(tmp_path / "run"), "-o", str(tmp_path / "again.pt")])
    assert not (tmp_path / "again.pt").exists()


def test_code_objects_are_refused_for_safety(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo unsafe",))

    torch.save({"format": EXPORT_FORMAT, "state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path / "evil.pt")
    message = str(info.value)
    assert "holds code objects (posix.system)" in message and "refused for safety" in message
    assert "weights_only=False" not in message and "Copy it again" not in message


def test_exports_respect_the_umask(tmp_path):
    import os
    import stat

    fake_run(tmp_path / "run")
    old = os.umask(0o002)
    try:
        export_model(tmp_path / "run", tmp_path / "model.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.pt").stat().st_mode) == 0o664
