"""Format-crossover study: writes analysis/results/formats_crossover.{csv,png}, prints the table.

Run: ``python3 analysis/formats_study.py`` (about 10 s). The same table is printed by
``sparsesim formats``.
"""

from __future__ import annotations

from _cli import parse

from sparsesim.formats.study import crossover_study, crossovers, plot_crossover, render_table


def main(argv: list[str] | None = None) -> None:
    RESULTS = parse(__doc__, argv).out
    df = crossover_study()
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / "formats_crossover.csv", index=False)
    crossovers(df).to_csv(RESULTS / "formats_crossover_points.csv", index=False)
    plot_crossover(df).savefig(RESULTS / "formats_crossover.png", dpi=150)
    print(render_table(df))


if __name__ == "__main__":
    main()
