"""Sweeps: train variants of one config, then compare them in a table and plots.

``python -m seq2seq sweep configs/sweeps/addition.yaml [--out DIR] [--quick] [--jobs N] [--seeds S ...]
[section.key=value ...]``

The sweep file is described in :mod:`.spec`; training the variants, resuming them and the
output folder in :mod:`.running`. Then ``results.md``, ``results.csv`` and the PNG plots are
(re)written in ``<out>``.
With ``--seeds 1 2 3`` the whole sweep runs once per ``train.seed`` into ``<out>/seed-<s>/``
and ``<out>/results.md`` gives each variant's median, min and max over the seeds (single runs
of small models on these tasks can differ by tens of points).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...cli.errors import run_command
from ...cli.usage import examples
from ...config import ConfigError
from ...training.loop import TrainError
from .comparison import make_plots, seed_plot, seed_rows, write_table
from .running import clean, mark_sweep_folder, run_variants
from .scoring import summarize
from .spec import Sweep, load_sweep


def run_sweep(sweep: Sweep, out: Path, jobs: int = 1) -> list[dict[str, Any]]:
    """Train every variant (skipping finished ones), ``jobs`` at a time, then write the table
    and the plots."""
    mark_sweep_folder(out)
    statuses = run_variants(sweep.variants, out, jobs)
    rows = [summarize(v, out / v.name, statuses[v.name], sweep) for v in sweep.variants]
    _write_results(rows, out, lambda: make_plots(sweep, out, statuses), "plots")
    return rows


def run_seeds(path: Path, seeds: Sequence[int], out: Path, *, quick: bool = False, extra: Sequence[str] = (),
              jobs: int = 1) -> list[dict[str, Any]]:
    """The sweep once per seed (``train.seed``) in ``<out>/seed-<s>/``, each a complete sweep
    output; then ``<out>/results.md``/``.csv`` with the median, minimum and maximum over seeds of
    each variant's validation and test score, and ``<out>/seeds.png``."""
    mark_sweep_folder(out)
    rows_by_seed: dict[int, list[dict[str, Any]]] = {}
    sweep: Sweep | None = None
    for seed in seeds:
        print(f"=== seed {seed}", flush=True)
        sweep = load_sweep(path, quick=quick, extra=[*extra, f"train.seed={seed}"])
        rows_by_seed[seed] = run_sweep(sweep, out / f"seed-{seed}", jobs=jobs)
    assert sweep is not None
    rows = seed_rows(rows_by_seed, sweep)
    _write_results(rows, out, lambda: seed_plot(rows_by_seed, sweep, out),
                   f"seeds.png (median over seeds {list(seeds)})")
    return rows


def _write_results(rows: list[dict[str, Any]], out: Path, plot: Callable[[], object], plotted: str) -> None:
    """``results.csv`` and ``results.md`` of ``rows``, then ``plot()``; prints results.md and
    what was written (the plots named by ``plotted``)."""
    write_table(rows, out)
    plot()
    print((out / "results.md").read_text(encoding="utf-8"), flush=True)
    print(f"wrote {out / 'results.md'}, results.csv and {plotted}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq sweep",
                                description="Train the variants of a sweep file and compare them.",
        **examples(
            "python -m seq2seq sweep configs/sweeps/dates.yaml --quick",
            "python -m seq2seq sweep configs/sweeps/addition.yaml --jobs 2 --seeds 1 2 3",
        ))
    p.add_argument("sweep", type=Path, help="sweep YAML, e.g. configs/sweeps/addition.yaml")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/sweeps/<name>)")
    p.add_argument("--quick", action="store_true", help="apply the sweep's quick: overrides (fewer epochs)")
    p.add_argument("--clean", action="store_true",
                   help="delete --out first instead of resuming it (only a folder a sweep made)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="run the sweep once per train.seed into <out>/seed-<SEED>/ and write the median, min "
                        "and max over seeds to <out>/results.md")
    p.add_argument("--jobs", type=int, default=1,
                   help="variants trained at once, each in its own process with cpu_count/jobs threads "
                        "(output in <out>/<variant>/sweep.log); default 1")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="applied to every variant")
    args = p.parse_intermixed_args(argv)

    def run() -> int:
        sweep = load_sweep(args.sweep, quick=args.quick, extra=args.overrides)
        out = args.out or Path("runs") / "sweeps" / (sweep.name + ("-quick" if args.quick else ""))
        if args.jobs < 1:
            raise ConfigError(f"--jobs: must be >= 1, got {args.jobs}")
        if args.seeds and len(set(args.seeds)) != len(args.seeds):
            raise ConfigError(f"--seeds: a seed is repeated: {args.seeds}")
        if args.clean:  # only once the arguments are known to be good; only a folder a sweep made
            clean(out)
        if args.seeds:
            run_seeds(args.sweep, args.seeds, out, quick=args.quick, extra=args.overrides, jobs=args.jobs)
        else:
            run_sweep(sweep, out, jobs=args.jobs)
        return 0

    return run_command(run, (TrainError,))


if __name__ == "__main__":
    sys.exit(main())
