"""``faceinsight ablate``: the paper's module ablation and hyper-parameter sweeps, several seeds each.

    faceinsight ablate -c configs/synthface.yaml --seeds 3
    faceinsight ablate -c configs/celebahq64.yaml --seeds 3 --sweep model.correlation.omega=0,0.2,0.4,0.6,0.8,1.0
    faceinsight ablate -c configs/synthface.yaml --seeds 3 -- --trainer.max_epochs 2   # overrides for every run

Without ``--sweep`` the cells are the paper's four settings (its Table 4 and Fig. 8a): ``org`` (no
segmentation, correlation or logic module), ``+seg``, ``+seg+corr`` and ``full``. With ``--sweep KEY=V1,V2,...``
(any dotted CLI key, several keys for their cartesian product) the cells are the values, on top of the preset.
Every cell and seed is an ordinary run, ``faceinsight fit -c <preset> <overrides> --seed_everything <s>``, in its
own folder with its command (``command.txt``), Lightning's saved ``config.yaml``, its log and
``test_metrics.json``; a cell whose metrics exist is skipped, so an interrupted ablation resumes where it stopped.

Written to ``--out`` (default ``runs/ablate/<preset>``): ``runs.csv`` (every run), ``summary.md`` (mean and
sample standard deviation per setting, each step of the paper's order tested against one standard deviation
and with Welch's t-test, per-characteristic deltas), ``per_characteristic.csv`` and a PNG: bars per setting
like the paper's Fig. 8a, or a line over the swept values like its Fig. 8b. Checkpoints are chosen by the
validation metric inside each run; nothing here looks at test figures to choose anything.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

# The paper's ablation settings, in its order (each adds one module to the one before).
SETTINGS: dict[str, list[str]] = {
    "org": ["--model.use_seg", "false", "--model.use_correlation", "false", "--model.use_logic", "false"],
    "+seg": ["--model.use_seg", "true", "--model.use_correlation", "false", "--model.use_logic", "false"],
    "+seg+corr": ["--model.use_seg", "true", "--model.use_correlation", "true", "--model.use_logic", "false"],
    "full": ["--model.use_seg", "true", "--model.use_correlation", "true", "--model.use_logic", "true"],
}
# Metrics shown in tables and plots when a dataset reports them; the first three are Fig. 8's.
SHOWN = ("attributes/accuracy", "attributes/f1", "attributes/mAP", "consistency", "age/accuracy", "age/mae",
         "age/cs@5", "gender/accuracy", "expression/accuracy")  # fmt: skip
LOWER_IS_BETTER = {"age/mae"}


@dataclass
class Cell:
    """One run: a setting (or sweep point) at one seed, and where it lives."""

    setting: str
    seed: int
    overrides: list[str]
    folder: Path
    values: dict[str, str] = field(default_factory=dict)  # swept key -> value

    @property
    def metrics_file(self) -> Path:
        return self.folder / "test_metrics.json"

    def command(self, configs: Sequence[str], extra: Sequence[str]) -> list[str]:
        """The ``faceinsight fit`` command of this run (also written to ``command.txt``)."""
        return ["faceinsight", "fit", *(a for c in configs for a in ("-c", c)), *extra, *self.overrides,
                "--seed_everything", str(self.seed), "--trainer.enable_progress_bar", "false",
                "--model.metrics_file", str(self.metrics_file), "--trainer.default_root_dir", str(self.folder),
                "--trainer.logger.init_args.save_dir", str(self.folder)]  # fmt: skip


def sweep_points(specs: Sequence[str]) -> list[dict[str, str]]:
    """``["model.lr=1e-3,2e-3", "model.logic_weight=1,4"]`` -> every combination as ``{key: value}``."""
    axes = []
    for spec in specs:
        key, _, values = spec.partition("=")
        if not key or not values:
            raise SystemExit(f"--sweep takes KEY=V1,V2,...; got {spec!r}")
        axes.append([(key.removeprefix("--"), v) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-=+" else "_" for c in text)


def make_cells(out: Path, seeds: int, sweep: Sequence[str], settings: Sequence[str]) -> list[Cell]:
    """The ablation's settings, or the sweep's points, times seeds ``0..seeds-1``."""
    if sweep:
        named = {" ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in p.items()): p for p in sweep_points(sweep)}
        groups = {name: ([a for k, v in p.items() for a in (f"--{k}", v)], p) for name, p in named.items()}
    else:
        unknown = [s for s in settings if s not in SETTINGS]
        if unknown:
            raise SystemExit(f"unknown setting(s) {unknown}; choose from {list(SETTINGS)}")
        groups = {name: (SETTINGS[name], {}) for name in settings}
    return [Cell(name, seed, overrides, out / slug(name) / f"seed{seed}", values)
            for name, (overrides, values) in groups.items() for seed in range(seeds)]  # fmt: skip


def run_cell(cell: Cell, configs: Sequence[str], extra: Sequence[str], threads: int, cwd: Path) -> dict[str, Any]:
    """Run one cell's ``faceinsight fit`` in a subprocess with ``threads`` compute threads; returns its record.

    The record is the run's ``test_metrics.json`` plus its setting, seed, swept values and wall time. A cell
    with metrics already on disk is not run again (``seconds`` then comes from its earlier record).
    """
    cell.folder.mkdir(parents=True, exist_ok=True)
    done = cell.folder / "record.json"
    if cell.metrics_file.is_file() and done.is_file():
        return {**json.loads(done.read_text()), "skipped": True}
    command = cell.command(configs, extra)
    (cell.folder / "command.txt").write_text(shlex.join(command) + "\n")
    executable = Path(sys.executable).with_name("faceinsight")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with open(cell.folder / "run.log", "w") as log:
        code = subprocess.run([str(executable), *command[1:]], cwd=cwd, env=env, stdout=log, stderr=log).returncode
    seconds = time.perf_counter() - start
    if code != 0 or not cell.metrics_file.is_file():
        raise RuntimeError(f"{cell.setting} seed {cell.seed} failed (exit {code}); see {cell.folder / 'run.log'}")
    report = json.loads(cell.metrics_file.read_text())
    selection = (report.get("run") or {}).get("selection") or {}
    record = {"setting": cell.setting, "seed": cell.seed, "values": cell.values, "seconds": seconds,
              "threads": threads, "folder": str(cell.folder), "val": selection.get("best", math.nan),
              "monitor": selection.get("monitor"), "model": report["model"],
              "majority_baseline": report["majority_baseline"],
              "per_characteristic": report.get("per_characteristic", {})}  # fmt: skip
    done.write_text(json.dumps(record, indent=1))
    return record


def run_cells(
    cells: Sequence[Cell], configs: Sequence[str], extra: Sequence[str], jobs: int, cwd: Path
) -> tuple[list[dict[str, Any]], list[str]]:
    """All cells, ``jobs`` at a time with the machine's cores split between them; failures are collected."""
    cores = len(os.sched_getaffinity(0))
    threads = max(1, cores // jobs)
    records, failures = [], []
    with ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(run_cell, c, configs, extra, threads, cwd): c for c in cells}
        for i, future in enumerate(as_completed(futures), 1):
            cell = futures[future]
            try:
                r = future.result()
            except RuntimeError as error:
                failures.append(str(error))
                print(f"[{i}/{len(cells)}] {error}", flush=True)
                continue
            records.append(r)
            state = "done before" if r.get("skipped") else f"{r['seconds']:.0f} s, {threads} threads"
            print(f"[{i}/{len(cells)}] {cell.setting} seed {cell.seed}: {state}, val {r['val']:.4f}", flush=True)
    order = {(c.setting, c.seed): i for i, c in enumerate(cells)}
    records.sort(key=lambda r: order[(r["setting"], r["seed"])])
    return records, failures


# ---------------------------------------------------------------------------------------------- summaries
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for one value)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def by_setting(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["setting"], []).append(r)
    return groups


def shown_metrics(records: Sequence[dict[str, Any]], dataset: str) -> list[str]:
    present = set().union(*(r["model"].get(dataset, {}) for r in records))
    return [m for m in SHOWN if m in present]


def step_test(a: Sequence[float], b: Sequence[float], lower_is_better: bool = False) -> dict[str, Any]:
    """Does ``b`` beat ``a``? The difference of means, whether it exceeds one standard deviation (the larger
    of the two samples'), and Welch's two-sided t-test p-value."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    delta = (ma - mb) if lower_is_better else (mb - ma)
    sd = max(sa, sb)
    p = math.nan
    if len(a) > 1 and len(b) > 1 and sd > 0:
        with warnings.catch_warnings():  # scipy warns when the samples are nearly identical; p is then ~1 anyway
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_ind(b, a, equal_var=False).pvalue)
    return {"delta": delta, "sd": sd, "beyond_sd": bool(delta > sd) if not math.isnan(sd) else False, "p": p}


def per_characteristic_deltas(records: Sequence[dict[str, Any]], settings: Sequence[str]) -> list[dict[str, Any]]:
    """Per dataset, characteristic and consecutive pair of settings: the mean change of accuracy and AP."""
    groups = by_setting(records)
    rows = []
    for before, after in itertools.pairwise(settings):
        for dataset in sorted({d for r in records for d in r.get("per_characteristic", {})}):
            names = sorted({n for r in groups[before] for n in r["per_characteristic"].get(dataset, {})})
            for name in names:
                row = {"dataset": dataset, "step": f"{before} -> {after}", "characteristic": name}
                for metric in ("accuracy", "ap"):
                    va = [r["per_characteristic"][dataset][name][metric] for r in groups[before]]
                    vb = [r["per_characteristic"][dataset][name][metric] for r in groups[after]]
                    row[f"{metric}_delta"] = mean_std(vb)[0] - mean_std(va)[0]
                rows.append(row)
    return rows


def write_csv(records: Sequence[dict[str, Any]], path: Path) -> None:
    """One row per run: setting, seed, swept values, wall time, selection score and every test metric."""
    keys = sorted({f"{d}/{m}" for r in records for d, ms in r["model"].items() for m in ms})
    swept = sorted({k for r in records for k in r["values"]})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "seed", *swept, "seconds", "threads", "val", "monitor", *keys])
        for r in records:
            flat = {f"{d}/{m}": v for d, ms in r["model"].items() for m, v in ms.items()}
            w.writerow([r["setting"], r["seed"], *(r["values"].get(k, "") for k in swept), f"{r['seconds']:.1f}",
                        r["threads"], r["val"], r["monitor"], *(flat.get(k, "") for k in keys)])  # fmt: skip


def summary_markdown(records: Sequence[dict[str, Any]], settings: Sequence[str], title: str, ordered: bool) -> str:
    """Mean +- std per setting and metric, next to the majority baseline; with ``ordered``, each step of the
    settings' order tested, and the characteristics each step helps and hurts most."""
    groups = by_setting(records)
    lines = [f"# {title}", ""]
    for dataset in records[0]["model"]:
        metrics = shown_metrics(records, dataset)
        n = ", ".join(f"{s} {len(groups[s])}" for s in settings)
        lines += [f"## {dataset}", "", f"Mean ± sample std over seeds (runs per setting: {n}).", ""]
        lines.append("| setting | " + " | ".join(metrics) + " | wall s |")
        lines.append("|---|" + "---:|" * (len(metrics) + 1))
        for s in settings:
            cells = []
            for m in metrics:
                mu, sd = mean_std([r["model"][dataset].get(m, math.nan) for r in groups[s]])
                cells.append(f"{mu:.4f} ± {sd:.4f}")
            secs = mean_std([r["seconds"] for r in groups[s]])[0]
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {secs:.0f} |")
        baseline = records[0]["majority_baseline"].get(dataset, {})
        lines.append("| majority | " + " | ".join(f"{baseline.get(m, math.nan):.4f}" for m in metrics) + " | |")
        if ordered:
            lines += ["", "Each step of the order, per metric: Δ (mean of the later minus the earlier, sign so that",
                      "positive is better), whether Δ exceeds one std (the larger of the two settings'), Welch's p.",
                      "", "| step | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]  # fmt: skip
            for before, after in itertools.pairwise(settings):
                cells = []
                for m in metrics:
                    a = [r["model"][dataset].get(m, math.nan) for r in groups[before]]
                    b = [r["model"][dataset].get(m, math.nan) for r in groups[after]]
                    t = step_test(a, b, m in LOWER_IS_BETTER)
                    verdict = "**yes**" if t["beyond_sd"] else "no"
                    cells.append(f"{t['delta']:+.4f} ({verdict}, p={t['p']:.2f})")
                lines.append(f"| {before} → {after} | " + " | ".join(cells) + " |")
        lines.append("")
    if ordered:
        deltas = per_characteristic_deltas(records, settings)
        if deltas:
            lines += ["## Characteristics each step helps and hurts most (mean Δ accuracy over seeds)", ""]
            for (dataset, step), rows in itertools.groupby(deltas, key=lambda r: (r["dataset"], r["step"])):
                rows = sorted(rows, key=lambda r: r["accuracy_delta"])
                best = [r for r in rows[::-1][:5] if r["accuracy_delta"] > 0]
                worst = [r for r in rows[:5] if r["accuracy_delta"] < 0]
                best_text = ", ".join(f"{r['characteristic']} {r['accuracy_delta']:+.3f}" for r in best) or "none"
                worst_text = ", ".join(f"{r['characteristic']} {r['accuracy_delta']:+.3f}" for r in worst) or "none"
                lines.append(f"- {dataset}, {step}: helps {best_text}; hurts {worst_text}")
            lines.append("")
    return "\n".join(lines)


def plot(records: Sequence[dict[str, Any]], settings: Sequence[str], path: Path, sweep: bool) -> None:
    """Fig. 8a (bars per setting, error bars = std) or Fig. 8b (metric over the first swept key)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_setting(records)
    datasets = list(records[0]["model"])
    metrics = ["attributes/accuracy", "attributes/f1", "attributes/mAP"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        present = [m for m in metrics if m in shown_metrics(records, dataset)]
        if sweep:
            key = next(iter(records[0]["values"]))
            rest = sorted({tuple((k, v) for k, v in groups[s][0]["values"].items() if k != key) for s in settings})
            for other in rest:
                chosen = [s for s in settings if all(groups[s][0]["values"][k] == v for k, v in other)]
                xs = [float(groups[s][0]["values"][key]) for s in chosen]
                for m in present:
                    ms = [mean_std([r["model"][dataset][m] for r in groups[s]]) for s in chosen]
                    label = m.split("/")[-1] + "".join(f", {k.rsplit('.', 1)[-1]}={v}" for k, v in other)
                    ax.errorbar(xs, [mu for mu, _ in ms], yerr=[sd for _, sd in ms], marker="o", capsize=3, label=label)
            ax.set_xlabel(key)
        else:
            width = 0.8 / len(settings)
            low = 1.0
            for i, s in enumerate(settings):
                ms = [mean_std([r["model"][dataset][m] for r in groups[s]]) for m in present]
                xs = [j + (i - (len(settings) - 1) / 2) * width for j in range(len(present))]
                ax.bar(xs, [mu for mu, _ in ms], width, yerr=[sd for _, sd in ms], capsize=3, label=s)
                low = min(low, *(mu - (0 if math.isnan(sd) else sd) for mu, sd in ms))
            ax.set_xticks(range(len(present)), [m.split("/")[-1] for m in present])
            ax.set_ylim(max(0.0, low - 0.05), 1.0)  # every error bar in view
        ax.set_title(f"{dataset} (mean ± std, {len(next(iter(groups.values())))} seeds)")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """``faceinsight ablate -c <preset> [--seeds N] [--sweep KEY=V1,V2 ...] [--jobs J] [-- overrides]``."""
    parser = argparse.ArgumentParser(prog="faceinsight ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("-c", "--config", action="append", required=True, help="preset(s), composed in order")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per setting (default 3)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help=f"subset of {list(SETTINGS)}")
    parser.add_argument("--sweep", nargs="+", default=[], metavar="KEY=V1,V2", help="sweep these values instead")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, cores split between them (default 2)")
    parser.add_argument("--out", help="output folder (default runs/ablate/<preset name>[_<swept key>])")
    parser.add_argument("overrides", nargs="*", help="CLI overrides for every run (after --)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        raise SystemExit("--seeds and --jobs must be at least 1")
    name = "+".join(Path(c).stem for c in args.config)
    if args.sweep:
        name += "_" + "_".join(slug(s.partition("=")[0].rsplit(".", 1)[-1]) for s in args.sweep)
    out = Path(args.out or Path("runs/ablate") / name)
    out.mkdir(parents=True, exist_ok=True)
    cells = make_cells(out, args.seeds, args.sweep, args.settings)
    settings = list(dict.fromkeys(c.setting for c in cells))
    print(f"{len(cells)} runs ({len(settings)} settings x {args.seeds} seeds), {args.jobs} at a time -> {out}")
    start = time.perf_counter()
    records, failures = run_cells(cells, args.config, args.overrides, args.jobs, Path.cwd())
    wall = time.perf_counter() - start
    if records:
        complete = [s for s in settings if any(r["setting"] == s for r in records)]
        write_csv(records, out / "runs.csv")
        title = f"{'Sweep' if args.sweep else 'Ablation'}: {' + '.join(args.config)}"
        extra = f" with overrides `{shlex.join(args.overrides)}`" if args.overrides else ""
        text = summary_markdown(records, complete, title + extra, ordered=not args.sweep)
        skipped = sum(bool(r.get("skipped")) for r in records)
        text += (f"\nRuns took {sum(r['seconds'] for r in records):.0f} s in all ({len(records)} runs, {args.jobs} at "
                 f"a time); this invocation took {wall:.0f} s, {skipped} runs found done.\n")  # fmt: skip
        (out / "summary.md").write_text(text)
        deltas = per_characteristic_deltas(records, complete) if not args.sweep else []
        if deltas:
            with open(out / "per_characteristic.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(deltas[0]))
                w.writeheader()
                w.writerows(deltas)
        try:
            plot(records, complete, out / ("sweep.png" if args.sweep else "ablation.png"), sweep=bool(args.sweep))
        except ImportError:
            print("no plot: matplotlib is missing (pip install -c constraints.txt -e '.[plots]')", file=sys.stderr)
        print(text)
        print(f"wrote {out / 'runs.csv'}, {out / 'summary.md'} and the plot in {out}")
    if failures:
        raise SystemExit(f"{len(failures)} run(s) failed:\n" + "\n".join(failures))
