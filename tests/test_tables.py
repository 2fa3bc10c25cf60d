"""SI-SDRi tables against hand-made rows with known statistics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ugr_experiments.analysis.tables import (
    FOOTER,
    PERCENTILES,
    cells_to_latex,
    combine,
    spread_footer,
    summarize,
    summarize_spread,
    summarize_values,
    to_latex,
    to_markdown,
    write_table,
)

# numpy's linear percentile of 0..99 is q * 99 / 100.
Q_0_TO_99 = {f"q{q}": q * 99 / 100 for q in PERCENTILES}
STD_0_TO_99 = math.sqrt((100**2 - 1) / 12)  # population std of 0..N-1 is sqrt((N^2 - 1) / 12)


def rows_of(values: list[float], groups: list[str], epoch: int = 0) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame(
        {
            "epoch": [epoch] * n,
            "mixture": [i // 2 for i in range(n)],
            "source": [i % 2 for i in range(n)],
            "group": groups,
            "sisdri": values,
        }
    )


def test_summarize_values_hand_statistics() -> None:
    stats = summarize_values(np.arange(100))
    assert stats["n"] == 100
    assert stats["mean"] == pytest.approx(49.5)
    assert stats["std"] == pytest.approx(STD_0_TO_99)
    for key, value in Q_0_TO_99.items():
        assert stats[key] == pytest.approx(value), key
    assert stats["q50"] == pytest.approx(49.5) and stats["q1"] == pytest.approx(0.99)


def test_summarize_values_small_hand_case() -> None:
    stats = summarize_values(np.array([1.0, 3.0]))
    assert (stats["mean"], stats["std"]) == (2.0, 1.0)  # ddof=0, not sqrt(2)
    assert stats["q25"] == 1.5
    with pytest.raises(ValueError, match="empty"):
        summarize_values(np.array([]))


def test_summarize_overall_and_per_group_rows() -> None:
    # speech: the even values 0, 2, ..., 98; environmental: the odd ones.
    groups = ["speech" if v % 2 == 0 else "environmental" for v in range(100)]
    table = summarize(rows_of(list(range(100)), groups))
    assert list(table.index) == ["all", "environmental", "speech"]  # all, then sorted
    expected_columns = ["n", "mean", "std"] + [f"q{q}" for q in PERCENTILES] + ["epochs"]
    assert list(table.columns) == expected_columns
    assert table.loc["all", "mean"] == pytest.approx(49.5)
    assert table.loc["all", "q10"] == pytest.approx(9.9)
    assert table.loc["speech", "n"] == 50
    assert table.loc["speech", "mean"] == pytest.approx(49.0)
    assert table.loc["environmental", "mean"] == pytest.approx(50.0)
    # 2 * (0..49): std 2 sqrt((50^2 - 1) / 12); q25 at position 0.25 * 49 = 12.25 -> 24.5.
    assert table.loc["speech", "std"] == pytest.approx(2 * math.sqrt((50**2 - 1) / 12))
    assert table.loc["speech", "q25"] == pytest.approx(24.5)
    assert table.loc["environmental", "q25"] == pytest.approx(25.5)
    assert (table["epochs"] == 1).all()


def test_several_epochs_are_summarised_per_epoch_then_averaged() -> None:
    groups = ["a"] * 100
    rows = pd.concat(
        [rows_of(list(range(100)), groups, 0), rows_of(list(range(100, 200)), groups, 1)]
    )
    table = summarize(rows)
    assert table.loc["all", "epochs"] == 2
    assert table.loc["all", "n"] == 100  # items per epoch, not 200
    assert table.loc["all", "mean"] == pytest.approx(99.5)
    # Per-epoch std is that of 0..99 in both epochs; pooling would give about 57.7 instead.
    assert table.loc["all", "std"] == pytest.approx(STD_0_TO_99)
    assert table.loc["all", "q1"] == pytest.approx((0.99 + 100.99) / 2)
    spread = summarize_spread(rows)
    assert spread.loc["all", "mean"] == pytest.approx(50.0)  # population std of {49.5, 149.5}
    assert spread.loc["all", "std"] == pytest.approx(0.0)
    assert spread.loc["a", "q99"] == pytest.approx(50.0)


def test_epochs_with_different_sizes_average_n() -> None:
    rows = pd.concat(
        [rows_of([0.0, 2.0, 4.0, 6.0], ["g"] * 4, 3), rows_of([10.0, 20.0], ["g"] * 2, 7)]
    )
    table = summarize(rows)
    assert table.loc["all", "n"] == 3
    assert table.loc["all", "mean"] == pytest.approx((3.0 + 15.0) / 2)
    assert table.loc["all", "std"] == pytest.approx((math.sqrt(5.0) + 5.0) / 2)


def test_summarize_without_epoch_or_groups() -> None:
    rows = pd.DataFrame({"sisdri": [1.0, 2.0, 3.0, 10.0]})
    table = summarize(rows, by=None)
    assert list(table.index) == ["all"]
    assert table.loc["all", "mean"] == pytest.approx(4.0)
    assert table.loc["all", "q50"] == pytest.approx(2.5)


def test_summarize_other_value_column() -> None:
    rows = rows_of([1.0, 2.0], ["a", "b"]).assign(sisdr=[5.0, 7.0])
    assert summarize(rows, value="sisdr").loc["all", "mean"] == pytest.approx(6.0)


def test_summarize_errors() -> None:
    with pytest.raises(ValueError, match="column 'sisdri' not in the rows"):
        summarize(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(ValueError, match="no rows"):
        summarize(pd.DataFrame({"sisdri": []}))
    with pytest.raises(ValueError, match="may not be called 'all'"):
        summarize(rows_of([1.0, 2.0], ["all", "b"]))


def test_combine_over_seeds() -> None:
    seed0 = summarize(rows_of([0.0, 2.0, 4.0, 6.0], ["a", "b", "a", "b"]))
    seed1 = summarize(rows_of([2.0, 4.0, 6.0, 8.0], ["a", "b", "a", "b"]))
    mean, spread = combine([seed0, seed1], count="seeds")
    assert list(mean.index) == ["all", "a", "b"]
    assert mean.loc["all", "mean"] == pytest.approx(4.0)  # (3 + 5) / 2
    assert mean.loc["b", "mean"] == pytest.approx(5.0)  # (4 + 6) / 2
    assert spread.loc["all", "mean"] == pytest.approx(1.0)
    assert (mean["seeds"] == 2).all() and (mean["epochs"] == 1).all()
    assert "n" not in spread.columns


def test_to_markdown_exact() -> None:
    table = pd.DataFrame(
        {"n": [4.0, 2.0], "mean": [1.0 / 3.0, -17.5], "q50": [2.0, 0.125], "epochs": [1, 1]},
        index=pd.Index(["all", "speech"], name="subset"),
    )
    expected = (
        "### Title\n"
        "\n"
        "| subset | n | mean | q50 | epochs |\n"
        "|:---|---:|---:|---:|---:|\n"
        "| all | 4 | 0.33 | 2.00 | 1 |\n"
        "| speech | 2 | -17.50 | 0.12 | 1 |\n"
        "\n"
        "Footer text.\n"
    )
    assert to_markdown(table, "Title", "Footer text.") == expected


def test_to_markdown_with_spread() -> None:
    table = pd.DataFrame({"mean": [12.2]}, index=pd.Index(["speech"], name="subset"))
    spread = pd.DataFrame({"mean": [0.14]}, index=table.index)
    text = to_markdown(table, "", footer="", spread=spread)
    assert text == "| subset | mean |\n|:---|---:|\n| speech | 12.20 ± 0.14 |\n"


def test_to_latex_exact() -> None:
    table = pd.DataFrame(
        {"n": [4.0], "mean": [-2.345], "q1": [10.0]},
        index=pd.Index(["env_sounds"], name="subset"),
    )
    expected = (
        "\\begin{table}[t]\n"
        "\\centering\n"
        "\\caption{SI-SDRi, 50\\% \\& more}\n"
        "\\begin{tabular}{lrrr}\n"
        "\\toprule\n"
        "subset & n & mean & q1 \\\\\n"
        "\\midrule\n"
        "env\\_sounds & 4 & -2.35 & 10.00 \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}\n"
        "\\end{table}\n"
    )
    assert to_latex(table, "SI-SDRi, 50% & more") == expected


def test_write_table_files(tmp_path: Path) -> None:
    rows = rows_of([0.1, 1.0 / 3.0, 2.0, 5.0], ["speech", "environmental"] * 2)
    table = summarize(rows)
    paths = write_table(table, tmp_path / "out", stem="t", title="Test SI-SDRi (dB)")
    assert [p.name for p in paths] == ["t.csv", "t.md", "t.tex"]
    back = pd.read_csv(paths[0], index_col=0)
    pd.testing.assert_frame_equal(back, table, check_dtype=False, check_exact=True)
    md = paths[1].read_text()
    assert md.startswith("### Test SI-SDRi (dB)") and FOOTER in md
    assert "| environmental | 2 | 2.67 |" in md  # mean of 1/3 and 5
    assert "\\toprule" in paths[2].read_text()


def test_write_table_with_spread(tmp_path: Path) -> None:
    rows = pd.concat([rows_of([0.0, 1.0], ["a", "b"], 0), rows_of([2.0, 5.0], ["a", "b"], 1)])
    table, spread = summarize(rows), summarize_spread(rows)
    footer = FOOTER + " " + spread_footer("evaluation epochs")
    paths = write_table(table, tmp_path, footer=footer, spread=spread)
    back = pd.read_csv(paths[0], index_col=0)
    assert list(back.columns[:4]) == ["n", "mean", "mean_spread", "std"]
    assert back.loc["all", "mean"] == pytest.approx(2.0)  # (0.5 + 3.5) / 2
    assert back.loc["all", "mean_spread"] == pytest.approx(1.5)
    assert "| all | 2 | 2.00 ± 1.50 |" in paths[1].read_text()
    assert "2.00 $\\pm$ 1.50" in paths[2].read_text()


def test_latex_footer_turns_markdown_code_into_texttt(tmp_path: Path) -> None:
    """Footers are written in Markdown: `code` spans must not reach LaTeX as backticks."""
    cells = pd.DataFrame({"alpha": ["1/5"], "mean": ["3.00 ± 0.10"]})
    footer = "Over the runs (`runs`) of `seed_0`; 50% of a ` b."
    tex = cells_to_latex(cells, "Table `1`", footer)
    assert "\\caption{Table \\texttt{1}}" in tex
    expected = (
        "\\par\\smallskip\\footnotesize Over the runs (\\texttt{runs}) of \\texttt{seed\\_0}; "
        "50\\% of a \\textasciigrave{} b."
    )
    assert expected in tex.splitlines()
    assert "`" not in tex
    # the statistics table's own footer (FOOTER names `all` and `epochs`) likewise
    table = summarize(rows_of([0.0, 1.0], ["a", "b"]))
    tex_path = write_table(table, tmp_path)[2]
    assert "`" not in tex_path.read_text() and "(\\texttt{all})" in tex_path.read_text()
    assert "(`all`)" in tex_path.with_suffix(".md").read_text()  # Markdown keeps them


def test_writers_are_re_exported_by_tables() -> None:
    from ugr_experiments.analysis import tables, writers

    for name in writers.__all__:
        assert getattr(tables, name) is getattr(writers, name), name
