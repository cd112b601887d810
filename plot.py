"""Training dynamics as figures: the SimpleRL / Dr. GRPO panels drawn from metrics.jsonl (matplotlib, no display).

    python plot.py runs/default                          # -> runs/default/metrics.png
    python plot.py runs/grpo runs/drgrpo --out cmp.pdf   # several runs overlaid (one colour per run), as PDF
    python plot.py runs/sft                              # an SFT run (sft.py): its loss and eval loss

train_zero.py writes <out_dir>/metrics.png itself at every eval and at the end of a run. The panels
(`PANELS`) are the curves the papers discuss: reward and accuracy, answer rate, response length (mean,
and of correct vs wrong responses: Dr. GRPO's length bias), truncation and repetition, the "aha"
keyword rates, entropy, clip fraction, KL, the loss (RL: the policy loss; SFT: the training and held-out
cross-entropy), grad norm, held-out accuracy per benchmark, and seconds per phase. Only the panels a run
has data for are drawn: a metric it does not log (KL without --kl-coef, RL panels for an SFT run, a step
whose value is null) is left out. --out's suffix names the format (.png, .pdf, .svg, ...: whatever
matplotlib writes). A run directory without metrics rows, or an --out matplotlib cannot write, is refused
with one line each before anything is drawn (exit 2).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import tyro  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402

from data import UsageError, read_log  # noqa: E402

# (panel title, [(metrics.jsonl key, curve label)]); "eval/*" expands to every benchmark a run evaluated,
# "reflection/*" to every keyword that occurred
PANELS: list[tuple[str, list[tuple[str, str]]]] = [
    ("reward and accuracy", [("reward_mean", "reward"), ("accuracy", "accuracy")]),
    ("answer rate", [("answer_rate", "answer rate")]),
    ("response length (tokens)", [("response_length_mean", "mean"), ("response_length_correct", "correct"),
                                  ("response_length_wrong", "wrong")]),
    ("truncation and repetition", [("truncation_rate", "truncated"), ("repetition_rate", "repeating to the end")]),
    ("reflection keywords", [("reflection_rate", "any keyword"), ("reflection/*", "")]),
    ("entropy (nats / token)", [("entropy", "entropy")]),
    ("clip fraction", [("clip_fraction", "clip fraction")]),
    ("KL to the reference", [("kl", "kl")]),
    ("loss", [("loss", "loss"), ("eval_loss", "eval loss")]),  # RL: policy loss; SFT: cross-entropy, held-out
    ("grad norm", [("grad_norm", "grad norm")]),
    ("held-out accuracy (greedy pass@1)", [("eval/*", "")]),
    ("learn-phase MFU", [("mfu", "mfu")]),  # GPU runs (or --peak-tflops)
    ("seconds per phase", [("time_rollout", "rollout"), ("time_reward", "reward"), ("time_learn", "learn"),
                           ("time_sync", "sync")]),
]
STYLES = ["-", "--", ":", "-."]  # one line style per curve of a panel; the colour is the run's
COLUMNS = 4  # panels per row of the figure


def _curves(rows: list[dict], keys: list[tuple[str, str]]) -> list[tuple[str, list[int], list[float]]]:
    """(label, steps, values) per curve, skipping rows where the key is missing or null; "eval/*" and
    "reflection/*" expand (each benchmark's accuracy "eval/<name>", not its answer rate, stderr or length; keywords
    that occurred at least once)."""
    expanded = []
    for key, label in keys:
        if key == "eval/*":
            names = sorted({k for r in rows for k in r if k.startswith("eval/") and k.count("/") == 1})
            expanded += [(k, k.removeprefix("eval/")) for k in names]
        elif key == "reflection/*":
            names = sorted({k for r in rows for k, v in r.items() if k.startswith("reflection/") and v})
            expanded += [(k, k.removeprefix("reflection/")) for k in names]
        else:
            expanded.append((key, label))
    out = []
    for key, label in expanded:
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if points:
            out.append((label, [s for s, _ in points], [v for _, v in points]))
    return out


def figure_format(out: str | Path) -> str:
    """The format matplotlib writes `out` in, from its suffix ("cmp.PDF" -> "pdf"). Raises UsageError for a
    suffix it cannot write (or none), naming the ones it can."""
    fmt = Path(out).suffix.lower().removeprefix(".")
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise UsageError(f"--out {out}: {f'.{fmt} is not' if fmt else 'no suffix names'} a figure format matplotlib "
                         f"writes; use one of {', '.join('.' + s for s in sorted(supported))}")
    return fmt


def read_runs(run_dirs: list[str | Path], out: str | Path) -> list[tuple[str, list[dict]]]:
    """(name, metrics rows) per run directory, after checking everything plot_runs needs before it draws.

    Raises UsageError, one line per problem (all of them): no run directory; a run directory without a
    metrics.jsonl, with a malformed row, or with no rows yet; an --out whose suffix matplotlib cannot write or
    whose directory does not exist.
    """
    problems = [] if run_dirs else ["no run directory given: python plot.py runs/default [runs/other ...]"]
    try:
        figure_format(out)
    except UsageError as e:
        problems.append(str(e))
    if not Path(out).absolute().parent.is_dir():
        problems.append(f"--out {out}: the directory {Path(out).parent} does not exist")
    runs = []
    for run in run_dirs:
        log = Path(run) / "metrics.jsonl"
        if not log.is_file():
            problems.append(f"{run}: no metrics.jsonl (is it a run directory of train_zero.py or sft.py?)")
            continue
        try:
            rows = read_log(log)
        except (OSError, UsageError) as e:
            problems.append(str(e))
            continue
        if not rows:
            problems.append(f"{log}: no rows yet (the run has not logged a step)")
        runs.append((Path(run).name or str(run), rows))
    if problems:
        raise UsageError("\n".join(problems))
    return runs


def plot_runs(run_dirs: list[str | Path], out: str | Path) -> list[str]:
    """Draw the PANELS the runs have data for (overlaid, one colour per run) into `out`, in the format its suffix
    names (written atomically); returns the titles of the panels drawn, in PANELS order.

    Raises UsageError (read_runs) before drawing anything: a run without metrics rows, an --out that cannot be
    written, or runs none of whose rows has a metric of PANELS.
    """
    runs = read_runs(run_dirs, out)
    panels = [(title, [(name, _curves(rows, keys)) for name, rows in runs]) for title, keys in PANELS]
    panels = [(title, curves) for title, curves in panels if any(c for _, c in curves)]
    if not panels:
        raise UsageError(f"{', '.join(str(r) for r in run_dirs)}: no row has a metric plot.py draws "
                         f"(the keys of plot.PANELS)")
    rows_of_panels = (len(panels) + COLUMNS - 1) // COLUMNS
    fig, axes = plt.subplots(rows_of_panels, COLUMNS, figsize=(4.2 * COLUMNS, 3.2 * rows_of_panels), squeeze=False)
    for ax, (title, curves) in zip(axes.flat, panels):
        lines = 0
        for colour, (name, run_curves) in enumerate(curves):
            for style, (label, steps, values) in enumerate(run_curves):
                legend = label if len(runs) == 1 else f"{name}: {label}" if label else name
                ax.plot(steps, values, STYLES[style % len(STYLES)], color=f"C{colour}", label=legend,
                        marker="o" if len(steps) < 3 else None, markersize=3)
                lines += 1
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if lines > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    fig.suptitle(" vs ".join(name for name, _ in runs), fontsize=11)
    fig.tight_layout()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # the format is given, not inferred from this name
    try:
        fig.savefig(tmp, format=figure_format(out), dpi=90)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return [title for title, _ in panels]


def write_run_figure(run_dir: str | Path) -> Path | None:
    """run_dir/metrics.png from its metrics.jsonl (train_zero.py calls it at every eval and at the end; an RL or
    an SFT run). The figure is a view, never worth a run: a failure to draw is a warning on stderr and None."""
    try:
        out = Path(run_dir) / "metrics.png"
        plot_runs([run_dir], out)
        return out
    except (OSError, ValueError, RuntimeError) as e:  # UsageError is a ValueError
        print(f"warning: could not draw {Path(run_dir) / 'metrics.png'}: {' / '.join(str(e).splitlines())}",
              file=sys.stderr, flush=True)
        return None


@dataclass
class Args:
    """Draw the training dynamics of one or more runs (metrics.jsonl) as panels."""

    runs: tyro.conf.Positional[list[str]] = field(default_factory=list)  # run directories with a metrics.jsonl
    out: str = ""  # figure to write (.png, .pdf, .svg); "": <run>/metrics.png, or comparison.png for several runs


def main(args: Args) -> Path:
    out = Path(args.out or (Path(args.runs[0]) / "metrics.png" if len(args.runs) == 1 else "comparison.png"))
    drawn = plot_runs(args.runs, out)
    print(f"{out}: {len(drawn)} panels ({', '.join(drawn)})")
    return out


if __name__ == "__main__":
    from rundir import cli

    cli("plot.py", Args, main)
