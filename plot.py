"""Training dynamics as figures: the SimpleRL / Dr. GRPO panels drawn from metrics.jsonl (matplotlib, PNG, no display).

    python plot.py runs/default                          # -> runs/default/metrics.png
    python plot.py runs/grpo runs/drgrpo --out cmp.png   # several runs overlaid (one colour per run)

train_zero.py writes <out_dir>/metrics.png itself at every eval and at the end of a run. The panels
(`PANELS`) are the curves the papers discuss: reward and accuracy, answer rate, response length (mean,
and of correct vs wrong responses: Dr. GRPO's length bias), truncation and repetition, the "aha"
keyword rates, entropy, clip fraction, KL, grad norm, held-out accuracy per benchmark, and seconds per
phase. A metric a run does not log (KL without --kl-coef, a step whose value is null) is left out.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import tyro  # noqa: E402

from data import read_log  # noqa: E402

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
    ("grad norm", [("grad_norm", "grad norm")]),
    ("held-out accuracy (greedy pass@1)", [("eval/*", "")]),
    ("seconds per phase", [("time_rollout", "rollout"), ("time_reward", "reward"), ("time_learn", "learn"),
                           ("time_sync", "sync")]),
]
STYLES = ["-", "--", ":", "-."]  # one line style per curve of a panel; the colour is the run's


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


def plot_runs(run_dirs: list[str | Path], out: str | Path) -> list[str]:
    """Draw PANELS for the runs (overlaid, one colour each) into the PNG `out` (written atomically);
    returns the titles of the panels drawn (a panel with no data in any run is left empty and untitled)."""
    runs = [(Path(r).name or str(r), read_log(Path(r) / "metrics.jsonl")) for r in run_dirs]
    columns = 4
    fig, axes = plt.subplots((len(PANELS) + columns - 1) // columns, columns, figsize=(4.2 * columns, 3.2 * 3),
                             squeeze=False)
    for ax, (title, keys) in zip(axes.flat, PANELS):
        lines = 0
        for colour, (name, rows) in enumerate(runs):
            for style, (label, steps, values) in enumerate(_curves(rows, keys)):
                legend = label if len(runs) == 1 else f"{name}: {label}" if label else name
                ax.plot(steps, values, STYLES[style % len(STYLES)], color=f"C{colour}", label=legend,
                        marker="o" if len(steps) < 3 else None, markersize=3)
                lines += 1
        if lines:
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if lines > 1:
                ax.legend(fontsize=7)
        else:
            ax.set_axis_off()
    for ax in list(axes.flat)[len(PANELS):]:
        ax.set_axis_off()
    drawn = [ax.get_title() for ax in fig.axes if ax.get_title()]
    fig.suptitle(" vs ".join(name for name, _ in runs), fontsize=11)
    fig.tight_layout()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, out)
    return drawn


def write_run_figure(run_dir: str | Path) -> Path | None:
    """run_dir/metrics.png from its metrics.jsonl (train_zero.py calls it at every eval and at the end). The figure
    is a view, never worth a run: a failure to draw is a warning on stderr and None."""
    try:
        out = Path(run_dir) / "metrics.png"
        plot_runs([run_dir], out)
        return out
    except (OSError, ValueError, RuntimeError) as e:
        print(f"warning: could not draw {Path(run_dir) / 'metrics.png'}: {e}", file=sys.stderr, flush=True)
        return None


@dataclass
class Args:
    runs: tyro.conf.Positional[list[str]]  # run directories (each with a metrics.jsonl)
    out: str = ""  # PNG to write; default: <run>/metrics.png for one run, comparison.png for several


def main(args: Args) -> Path:
    out = Path(args.out or (Path(args.runs[0]) / "metrics.png" if len(args.runs) == 1 else "comparison.png"))
    drawn = plot_runs(args.runs, out)
    print(f"{out}: {len(drawn)} panels ({', '.join(drawn)})")
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
