"""GRPO's length bias on a laptop: GRPO and Dr. GRPO on identical data and seeds, the mean length of wrong and of
right responses per step (Liu et al. 2025, "Understanding R1-Zero-Like Training", Figure 5; docs/papers.md §3).

    python benchmarks/length_bias.py                                  # 2 algorithms x 3 seeds, figure + summary
    python benchmarks/length_bias.py --seeds 0 --steps 5 --out-dir /tmp/lb   # a quick look

The claim: GRPO divides each response's summed token loss by its own length |o_i|, so a long wrong response
(negative advantage) is pushed down less per token than a short one, and wrong responses grow longer; Dr. GRPO
divides by one constant (the token budget) and has no such pull. Each run is `train_zero.py` with the settings
below and `--algo grpo` or `--algo drgrpo`; nothing else differs. The default task was chosen by a pilot before
any training, not tuned on the result: the built-in `arithmetic` set with the `chat_oneshot` template and 64 new
tokens (SmolLM2-135M, temperature 1.0, 64 problems: 1.6 % right, 42 % boxed, 5 of 64 truncated, mean 23
tokens), so most responses are wrong, few are cut, and length has room to move; the SimpleRL reward
(+1 / -0.5 / -1) so that wrong responses carry advantages of both signs.

Writes, under --out-dir: one run directory per (algo, seed) (a finished one is read back, not re-run, so an
interrupted sweep continues), `summary.json` ({algo: {seed: {"wrong": [...], "correct": [...], "mean": [...]}}},
per step, tokens; None where a step had no such response), and the figure --figure (mean over seeds, each seed
thin). Prints per algorithm the mean length of wrong responses over the first and the last 3 steps.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import tyro  # noqa: E402

from train_zero import Config, main  # noqa: E402

ALGOS = ("grpo", "drgrpo")
SERIES = {"wrong": "response_length_wrong", "correct": "response_length_correct", "mean": "response_length_mean"}


@dataclass
class LengthBiasSettings:
    """The experiment: which runs, and the task every run shares."""

    seeds: tuple[int, ...] = (0, 1, 2)  # one GRPO and one Dr. GRPO run per seed
    steps: int = 15  # training steps per run
    out_dir: str = "runs/length_bias"  # run directories, summary.json
    figure: str = "docs/length_bias.png"  # the figure ("" : none)
    model: str = "smollm2-135m"  # --model of every run
    train_data: str = "arithmetic"
    template: str = "chat_oneshot"
    reward: str = "simplerl"
    max_new_tokens: int = 64
    lr: float = 5e-5


def run_config(s: LengthBiasSettings, algo: str, seed: int) -> Config:
    """train_zero's Config of one run: the shared task, this algorithm and seed, no eval, no checkpoint."""
    return replace(Config(), model=s.model, train_data=s.train_data, template=s.template, reward=s.reward,
                   max_new_tokens=s.max_new_tokens, lr=s.lr, steps=s.steps, algo=algo, seed=seed, eval_every=0,
                   save_every=0, out_dir=str(Path(s.out_dir) / f"{algo}_seed{seed}"))


def finished_rows(cfg: Config) -> list[dict] | None:
    """The metrics rows of a finished run in cfg.out_dir (one per step 1..steps), else None."""
    path = Path(cfg.out_dir) / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows if [r["step"] for r in rows] == list(range(1, cfg.steps + 1)) else None


def series(rows: list[dict]) -> dict[str, list]:
    """{"wrong" | "correct" | "mean": per-step mean response length in tokens (None: no such response)}."""
    return {name: [row.get(key) for row in rows] for name, key in SERIES.items()}


def mean_over(values: list, first: bool, k: int = 3) -> float | None:
    part = [v for v in (values[:k] if first else values[-k:]) if v is not None]
    return sum(part) / len(part) if part else None


def draw(summary: dict, path: str) -> None:
    """Two panels (wrong, right responses): each algorithm's mean over seeds, each seed as a thin line."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, name in zip(axes, ("wrong", "correct")):
        for color, algo in zip(("tab:red", "tab:blue"), summary):
            runs = list(summary[algo].values())
            for run in runs:
                ax.plot(range(1, len(run[name]) + 1), [float("nan") if v is None else v for v in run[name]],
                        color=color, alpha=0.25, linewidth=0.8)
            steps = len(runs[0][name])
            means = []
            for i in range(steps):
                values = [run[name][i] for run in runs if run[name][i] is not None]
                means.append(sum(values) / len(values) if values else float("nan"))
            ax.plot(range(1, steps + 1), means, color=color, linewidth=2, label=algo)
        ax.set_title(f"mean length of {'wrong' if name == 'wrong' else 'right'} responses (tokens)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(s: LengthBiasSettings) -> dict:
    """Every (algo, seed) run (finished ones read back), summary.json, the figure; returns the summary."""
    summary = {}
    for algo in ALGOS:
        summary[algo] = {}
        for seed in s.seeds:
            cfg = run_config(s, algo, seed)
            rows = finished_rows(cfg)
            if rows is None:
                rows = main(replace(cfg, overwrite=Path(cfg.out_dir).exists()))
            summary[algo][str(seed)] = series([r for r in rows if r["step"] >= 1])
    Path(s.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(s.out_dir) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if s.figure:
        draw(summary, s.figure)
    print("algo     seed  wrong-response length: first 3 steps -> last 3 steps (tokens)")
    for algo, runs in summary.items():
        for seed, run_series in runs.items():
            first, last = mean_over(run_series["wrong"], True), mean_over(run_series["wrong"], False)
            print(f"{algo:8s} {seed:>4s}  {first if first is None else round(first, 1)} -> "
                  f"{last if last is None else round(last, 1)}")
    return summary


if __name__ == "__main__":
    run(tyro.cli(LengthBiasSettings))
