"""Verdicts of the paper's claims on constructed per-source rows whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ugr_experiments.analysis import verdicts as V
from ugr_experiments.analysis.runs import COMPLETE, Run

N_MIX = 60  # mixtures; 2 sources each -> 120 items


def _rows(values: np.ndarray, groups: list[str] | None = None) -> pd.DataFrame:
    """Per-source rows of one run: values (items, epochs), item i = (mixture i//2, source i%2)."""
    n, epochs = values.shape
    groups = groups or ["environmental"] * n
    frames = []
    for e in range(epochs):
        frames.append(
            pd.DataFrame(
                {
                    "epoch": e + 1,
                    "mixture": np.arange(n) // 2,
                    "source": np.arange(n) % 2,
                    "group": groups,
                    "file": [f"f{i}.wav" for i in range(n)],
                    "offset": np.arange(n) * 10,
                    "snr_db": np.round(np.linspace(-5, 5, n), 3),
                    "sisdri": values[:, e],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _run(cfg: dict, values: np.ndarray, seed: int, groups=None, history=None) -> Run:
    config = {"seed": seed, **cfg}
    return Run(Path(f"/runs/{seed}"), config, COMPLETE, rows=_rows(values, groups), history=history)


def _robust(alpha: float) -> dict:
    return {"weighting": {"name": "robust", "alpha": alpha}, "dataset": {"name": "esc50"}}


def _base_values(seed: int) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    return rng.normal(4.0, 8.0, size=(2 * N_MIX, 2))  # (items, 2 evaluation epochs)


def _stat(values: np.ndarray, which: str) -> float:
    """A statistic computed per epoch (numpy directly) and averaged over the epochs."""
    per_epoch = {
        "mean": values.mean(0),
        "std": values.std(0),
        "q1": np.percentile(values, 1, axis=0),
        "q5": np.percentile(values, 5, axis=0),
    }[which]
    return float(per_epoch.mean())


def _robust_runs(shrink_top: float, shift_top: float) -> tuple[list[Run], dict]:
    runs, values = [], {}
    for seed in (0, 1, 2):
        base = _base_values(seed)
        top = shrink_top * (base - 4.0) + 4.0 + shift_top
        middle = 0.5 * (base + top)
        for alpha, v in ((0.0, base), (1 / 15, middle), (0.1, middle), (0.2, top)):
            runs.append(_run(_robust(alpha), v, seed))
            values[(alpha, seed)] = v
    return runs, values


def test_robust_verdicts_hold_where_the_tail_rises_and_match_numpy() -> None:
    runs, values = _robust_runs(shrink_top=0.4, shift_top=-0.5)
    out = {v.claim.split(" at ")[0]: v for v in V.robust_verdicts(runs)}
    for stat in ("std", "q1", "q5", "mean"):
        expected = np.mean(
            [_stat(values[(0.2, s)], stat) - _stat(values[(0.0, s)], stat) for s in (0, 1, 2)]
        )
        claim = next(v for k, v in out.items() if k.startswith(stat))
        assert claim.ours == pytest.approx(expected, abs=1e-9)
        assert claim.ci_low <= claim.ours <= claim.ci_high
    assert all(v.holds for v in out.values()), V.to_markdown(list(out.values()))
    between = next(v for k, v in out.items() if k.startswith("alpha 1/15"))
    assert between.ours == 6


def test_robust_verdicts_fail_where_the_distribution_widens() -> None:
    runs, _ = _robust_runs(shrink_top=1.6, shift_top=+1.0)
    out = {v.claim.split(" at ")[0]: v for v in V.robust_verdicts(runs)}
    assert not out["std decreases"].holds
    assert not out["q1 increases"].holds
    assert not out["mean decreases or stays"].holds  # mean rose by 1 dB on every item


def test_between_counts_an_intermediate_alpha_outside_the_ends() -> None:
    runs, _ = _robust_runs(shrink_top=0.4, shift_top=-0.5)
    for run in runs:  # alpha 1/10 spreads wider than alpha 0: std and both tails outside
        if run.config["weighting"]["alpha"] == 0.1:
            run.rows["sisdri"] = 2.0 * (run.rows["sisdri"] - 4.0) + 4.0
    between = V.robust_verdicts(runs)[-1]
    assert between.ours == 3 and not between.holds


def test_joint_bootstrap_resamples_the_same_items_for_every_seed() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 1))
    pairs = [(a + 1.0, a), (a + 1.0, a)]  # every item rises by exactly 1 dB in both seeds
    point, replicates = V.joint_paired_bootstrap(pairs, 200, np.random.default_rng(1))
    assert point[0] == pytest.approx(1.0)
    np.testing.assert_allclose(replicates[:, 0], 1.0)  # the mean difference never varies
    np.testing.assert_allclose(replicates[:, 1], 0.0, atol=1e-12)  # nor the std's


def test_class_verdicts() -> None:
    groups = ["speech", "environmental"] * N_MIX
    is_env = np.array([g == "environmental" for g in groups])[:, None]
    runs = []
    for seed in (0, 1):
        base = _base_values(seed)
        for pair, gain in (((0.0, 0.0), 0.0), ((0.0, 3.0), 1.0), ((3.0, 0.0), -1.0)):
            # (0, 3): env +1 dB, speech -0.5; (3, 0): speech +1 dB, env -0.5
            env = np.where(gain > 0, 1.0, np.where(gain < 0, -0.5, 0.0))
            speech = np.where(gain > 0, -0.5, np.where(gain < 0, 1.0, 0.0))
            values = base + np.where(is_env, env, speech)
            cfg = {
                "weighting": {
                    "name": "class",
                    "gamma": {"speech": pair[0], "environmental": pair[1]},
                },
                "gamma_pair": f"s{pair[0]:g}_e{pair[1]:g}",
            }
            runs.append(_run(cfg, values, seed, groups))
    out = V.class_verdicts(runs)
    gains = [v for v in out if "raises" in v.claim]
    assert [round(v.ours, 9) for v in gains] == [1.0, 1.0] and all(v.holds for v in gains)
    combined = [v for v in out if "combined" in v.claim]
    assert [round(v.ours, 9) for v in combined] == [0.25, 0.25] and all(v.holds for v in combined)


def _history(levels: list[float], every: int = 10) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": np.arange(1, len(levels) + 1),
            "step": every * np.arange(1, len(levels) + 1),
            "valid_sisdri": levels,
        }
    )


def test_curriculum_verdicts_count_steps_to_levels() -> None:
    uniform_curve = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0]  # levels 2.5, 4.0, 4.8 at 40, 50, 60
    easy_curve = [1.0, 3.0, 4.5, 5.0, 5.0, 5.0, 5.0, 5.0]  # the same levels at 20, 30, 40
    runs = []
    for seed in (0, 1, 2):
        base = _base_values(seed)
        for name, curve in (("uniform", uniform_curve), ("easy_first", easy_curve)):
            weighting = {"name": "uniform"} if name == "uniform" else {"name": "curriculum"}
            cfg = {"schedule": name, "weighting": weighting}
            runs.append(_run(cfg, base, seed, history=_history(curve)))
    out = V.curriculum_verdicts(runs)
    faster = next(v for v in out if "fewer steps" in v.claim)
    assert faster.ours == pytest.approx(20.0) and faster.holds
    assert faster.ci_low == pytest.approx(20.0)
    same_end = next(v for v in out if "no worse" in v.claim)
    assert same_end.ours == pytest.approx(0.0) and same_end.holds


def test_level_never_reached_counts_one_epoch_past_the_end() -> None:
    run = _run({}, _base_values(0), 0, history=_history([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(V.steps_to_levels(run, [1.0, 9.0]), [20.0, 40.0])


def test_written_csv_has_the_issue_columns(tmp_path: Path) -> None:
    runs, _ = _robust_runs(shrink_top=0.4, shift_top=-0.5)
    path = V.write_verdicts(V.robust_verdicts(runs), tmp_path / "verdicts.csv")
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["claim", "paper", "ours", "ci_low", "ci_high", "holds"]
    assert frame["holds"].dtype == bool
