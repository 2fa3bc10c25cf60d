import numpy as np
import pytest
import torch

from ugr_experiments.data import build_datasets, collate_mixtures
from ugr_experiments.data.base import mix_sources
from ugr_experiments.data.synthetic import CLASSES

CFG = {
    "name": "synthetic",
    "sample_rate": 8000,
    "segment_seconds": 0.5,
    "n_sources": 2,
    "snr_db": [-5.0, 5.0],
    "n_valid": 8,
    "n_test": 8,
}


def test_mix_sources_follows_the_paper_rule():
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((2, 1000)) * [[3.0], [0.2]] + 1.5
    mix, src = mix_sources(raw, snr_db=4.0)
    np.testing.assert_allclose(src.sum(0), mix, atol=1e-5)
    assert abs(mix.std() - 1.0) < 1e-5
    np.testing.assert_allclose(src.mean(-1), 0.0, atol=1e-6)
    # Independently: realised SNR of source 0 against source 1 is 4 dB.
    snr = 10 * np.log10((src[0] ** 2).sum() / (src[1] ** 2).sum())
    assert snr == pytest.approx(4.0, abs=1e-4)


def test_test_set_is_fixed_and_train_changes_with_epoch():
    a = build_datasets(CFG, seed=3, train_length=4)
    b = build_datasets(CFG, seed=3, train_length=4)
    for i in range(4):
        assert torch.equal(a["test"][i]["mixture"], b["test"][i]["mixture"])
    first = a["train"][0]["mixture"].clone()
    a["train"].set_epoch(1)
    a["test"].set_epoch(1)
    assert not torch.equal(first, a["train"][0]["mixture"])
    assert torch.equal(a["test"][0]["mixture"], b["test"][0]["mixture"])
    assert not torch.equal(a["valid"][0]["mixture"], a["test"][0]["mixture"])


def test_items_have_distinct_classes_labels_and_snr_in_range():
    data = build_datasets(CFG, seed=0, train_length=32)["train"]
    assert data.group_names == ["environmental", "speech"]
    for i in range(32):
        item = data[i]
        classes = [row["class"] for row in item["info"]]
        assert len(set(classes)) == 2
        assert [data.class_names[c] for c in item["class_idx"]] == classes
        assert [data.group_names[g] for g in item["group_idx"]] == [CLASSES[c] for c in classes]
        src = item["sources"].double()
        snr = 10 * torch.log10(src[0].pow(2).sum() / src[1].pow(2).sum())
        assert -5.0 - 1e-4 <= float(snr) <= 5.0 + 1e-4
        assert float(snr) == pytest.approx(item["info"][0]["snr_db"], abs=1e-3)
        assert src.pow(2).mean(-1).min() > 1e-3  # no silent source


def test_collate_stacks_tensors_and_keeps_info():
    data = build_datasets(CFG, seed=0, train_length=3)["valid"]
    batch = collate_mixtures([data[i] for i in range(3)])
    assert batch["mixture"].shape == (3, 4000)
    assert batch["sources"].shape == (3, 2, 4000)
    assert batch["class_idx"].shape == (3, 2)
    assert batch["index"] == [0, 1, 2] and len(batch["info"]) == 3


def test_unknown_class_and_dataset_are_refused():
    with pytest.raises(ValueError, match="unknown synthetic classes.*choose from"):
        build_datasets({**CFG, "classes": ["voice_low", "birds"]}, 0, 2)
    with pytest.raises(ValueError, match="unsupported dataset: 'wsj'; choose from"):
        build_datasets({**CFG, "name": "wsj"}, 0, 2)
