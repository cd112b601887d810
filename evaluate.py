"""Benchmark a model with the training template and grader: pass@1, avg@k with its standard error, pass@k.

    python evaluate.py --model <hub id | HF dir | runs/x/checkpoints/step_000040> --benchmarks all
    python evaluate.py --model ... --benchmarks aime24,amc23 --n 16 --temperature 1.0 --top-p 0.95 --pass-k 1,4,16
    python evaluate.py --model Qwen/Qwen2.5-Math-7B --benchmarks all --compare auto   # the published row beside ours
    torchrun --nproc_per_node 8 evaluate.py --engine hf --model ...   # transformers engine, problems split over ranks

Benchmarks (files under --data-dir, default $ZERO_RL_DATA or ../shared/data; data.BENCHMARKS): the six of
docs/papers.md §5, Oat-Zero's aime24_oat and amc_oat, SimpleRL v0's gaokao2023en and college_math, and "arithmetic",
"add_one" (held-out draws of the procedural sets); or a paper's table (fidelity/published.py GROUPS, its columns in its order):
`all` (the six), `oat`, `simplerl`, `zoo` (with AIME24 avg@32). A column samples with --n / --temperature / --top-p
unless it fixes its own (the Zoo's aime24_avg32: 32 samples at temperature 1.0 / top-p 0.95, pass@1..32; Oat's Minerva
grades against answer_alternatives). Greedy is the default (--n 1 --temperature 0), the papers' protocol. Per
column, written to `--out-dir`/summary.json and printed as one markdown table (the columns, then their unweighted
average over the paper's columns: the Zoo's leaves out avg@32):
- avg@n: the mean accuracy over all n samples of all problems (pass@1 when n = 1);
- stderr: the sample standard deviation over problems of each problem's mean accuracy, / sqrt(problems);
- pass@k for each k of --pass-k: the unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al. 2021, "Evaluating
  Large Language Models Trained on Code", with c correct of n samples), averaged over problems;
- the answer-extracted rate, truncation rate, mean response length (tokens) of all, correct and wrong responses,
  the verdict counts, and the reflection keyword rates (docs/papers.md §6, any keyword and each one).
Every sample is one row of `--out-dir`/<column>.jsonl (problem index, sample index, response, verdict), and
summarize() recomputes the summary from those rows. `--out-dir` is a run directory (rundir.run_directory: locked,
config.json, a second evaluation into it refused unless --overwrite), claimed after every flag, benchmark file and
the model's config were checked (each problem one line, exit 2). The settings are train_zero's groups where they
mean the same (model and dtype, data directory, vLLM, run directory, grader) and EvalSettings for the rest.

Engines: `--engine vllm` (scale.vllm_engine.VLLMEngine; --dtype, --tensor-parallel-size, --vllm-gpu-memory-utilization),
`--engine hf` (transformers: prompts go in longest first; `--hf-batching continuous`, the default on a GPU, uses
transformers' continuous batching, where a finished sequence leaves the batch at once and the next prompt takes its
place; `static`, the default on CPU where it is faster, batches of `generate`), `auto`: vLLM when it is installed
and there is one process, else transformers. The rank's GPU when there is one. Under torchrun the transformers
engine splits the problems over ranks (data parallel); for vLLM use --tensor-parallel-size instead.

Gold answers: Minerva `--minerva-gold answer` (default) grades against the last \\boxed{} of the reference
solution, as the Qwen2.5-Math / SimpleRL harness (`parser.parse_ground_truth`); `alternatives` counts a response
correct when it equals any entry of answer_alternatives, as understand-r1-zero (the Oat-Zero numbers).
OlympiadBench: final_answer[0] with its $ stripped, as both harnesses (every row of ours has one entry).

Deviations, one line each:
- Stop strings (r1's </answer>) end a transformers sequence after generation (its tokens past them are cut), not
  during it; vLLM stops at them. The verdicts are the same, only time is spent.
- The average: the unweighted mean of the columns (a group's: those its paper averages); a published row's is its own.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist

from checkpoint import read_trainer_state
from config import (DataSettings, GraderSettings, ModelSettings, ProtocolSettings, RunSettings, VLLMSettings,
                    apply_protocol)
from data import (BENCHMARKS, PROCEDURAL_SETS, ProblemSet, UsageError, load_eval_set, range_problems,
                  write_atomic, write_jsonl)
from distributed import Dist, setup_distributed
from grader_pool import Grader
from model import check_context, check_token_ids, load_model, load_model_config, resolve_dtype, resolve_model
from fidelity.published import GROUPS, Column, benchmark_columns, format_table, published_rows
from reward import (EXTRACTIONS, REFLECTION_WORDS, TEMPLATES, apply_template, reflection_words)
from rollout import HFEngine, Sample, SamplingParams, end_ids
from rundir import cli, run_directory, settings_problems
from scale.vllm_engine import vllm_engine
from train_zero import evaluate_problems

@dataclass
class EvalSettings:
    """Benchmarks, prompt and sampling."""

    benchmarks: str = "math500,gsm8k"  # comma-separated benchmarks (data.BENCHMARKS, arithmetic, add_one) and paper tables: all, oat, simplerl, zoo
    limit: int = 0  # first N problems of each benchmark (0: all)
    template: str = "auto"  # prompt template; auto: the one recorded in our checkpoint, else qwen_math
    extraction: str = "boxed"  # how the final answer is read (reward.EXTRACTIONS): boxed, qwen_harness, harness_if_boxed, r1_strict
    stop: tuple[str, ...] = ()  # stop strings besides EOS and the template's own (r1: </answer>)
    stop_token_ids: tuple[int, ...] = ()  # token ids that also end a response (kept in it); per model
    max_new_tokens: int = 3000  # generation budget (docs/papers.md §5: 3,000)
    n: int = 1  # samples per problem
    temperature: float = 0.0  # 0: greedy (the papers' pass@1); avg@k uses 1.0 with --top-p 0.95
    top_p: float = 1.0  # nucleus sampling (with --temperature > 0)
    pass_k: str = ""  # comma-separated k for pass@k, each <= n (default: 1, 2, 4, ... up to n, and n)
    engine: Literal["auto", "vllm", "hf"] = "auto"  # auto: vllm when installed (one process), else transformers
    tensor_parallel_size: int = 1  # vLLM: GPUs per engine
    batch_size: int = 64  # transformers engine: sequences decoded together
    hf_batching: Literal["auto", "continuous", "static"] = "auto"  # transformers engine; auto: continuous on a GPU, static (length-sorted generate) on CPU or with --hf-static-cache
    hf_static_cache: bool = False  # transformers engine, static batching: preallocated KV cache; on CUDA the decode step replays as CUDA graphs (rollout.HFEngine)
    minerva_gold: Literal["answer", "alternatives"] = "answer"  # see the module docstring
    compare: str = ""  # published rows to add: names of fidelity.published.PUBLISHED, comma-separated, or auto (from --model)

    def problems(self) -> list[str]:
        out = range_problems(self, [
            ("limit", self.limit >= 0, ">= 0 (0: all)"), ("max_new_tokens", self.max_new_tokens >= 1, "at least 1"),
            ("n", self.n >= 1, "at least 1"), ("temperature", self.temperature >= 0, ">= 0 (0: greedy)"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"), ("batch_size", self.batch_size >= 1, "at least 1"),
            ("tensor_parallel_size", self.tensor_parallel_size >= 1, "at least 1")])
        if self.extraction not in EXTRACTIONS:
            out.append(f"--extraction {self.extraction!r}: use one of {', '.join(EXTRACTIONS)}")
        if self.hf_static_cache and self.hf_batching == "continuous":
            out.append("--hf-static-cache: with --hf-batching static or auto (continuous batching pages its own cache)")
        if self.n > 1 and self.temperature <= 0:
            out.append(f"--n {self.n}: above 1 only with --temperature > 0 (greedy samples are all the same, so avg@n "
                       "and pass@n would repeat pass@1)")
        columns = benchmark_columns(self.benchmarks)
        unknown = [c.benchmark for c in columns if c.benchmark not in (*BENCHMARKS, "minerva", *PROCEDURAL_SETS)]
        if unknown or not columns:
            out.append(f"--benchmarks {self.benchmarks!r}: unknown {', '.join(unknown) or '(none given)'}; known: "
                       f"{', '.join([*BENCHMARKS, *PROCEDURAL_SETS])}, or a paper's table: {', '.join(GROUPS)}")
        if self.template != "auto" and self.template not in TEMPLATES:
            out.append(f"--template {self.template!r}: use one of {', '.join(sorted(TEMPLATES))}, or auto")
        try:
            pass_ks(self.pass_k, self.n)
        except UsageError as error:
            out.append(str(error))
        return out


@dataclass
class EvalConfig(ModelSettings, DataSettings, EvalSettings, RunSettings, GraderSettings, VLLMSettings, ProtocolSettings):
    """Every knob of an evaluation, by settings group."""

    out_dir: str = "runs/eval"


PROTOCOL_FIELDS = ("template", "extraction", "grader", "grader_timeout", "stop")  # --protocol's, besides its `eval`
EVAL_WRITES = ("summary.json", *dict.fromkeys(f"{name}.jsonl" for name in (  # in out_dir
    *BENCHMARKS, "minerva", *PROCEDURAL_SETS, *(column.name for group in GROUPS.values() for column in group))))


# ---------------------------------------------------------------------------------------------
# Estimators


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with c correct among n samples: 1 - C(n-c, k) / C(n, k), in [0, 1].

    Chen et al. 2021 (the numerically stable product form). Raises ValueError unless 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(records: list[dict], ks: list[int]) -> dict:
    """The numbers of one benchmark from its per-sample records (evaluate_problems' rows, any order).

    Returns a dict: problems, samples, n (samples per problem), avg@n and stderr and pass@k (fractions in [0, 1];
    stderr None for fewer than 2 problems), answer_rate, truncation_rate, length / length_correct / length_wrong
    (mean response tokens; None without such responses), verdicts (count per reason), reflection (rate of
    responses with any keyword) and reflection_words (rate per keyword). Raises ValueError when problems have
    different numbers of samples or a k exceeds them.
    """
    by_problem: dict[int, list[bool]] = {}
    for r in records:
        by_problem.setdefault(r["index"], []).append(r["reason"] == "correct")
    sizes = {len(v) for v in by_problem.values()}
    if len(sizes) > 1:
        raise ValueError(f"every problem needs the same number of samples; got {sorted(sizes)}")
    n = sizes.pop() if sizes else 0
    if any(k > n for k in ks):
        raise ValueError(f"pass@k needs k <= n = {n}; got k = {max(ks)}")
    means = [sum(v) / n for v in by_problem.values()]
    p = len(means)
    stderr = (math.sqrt(sum((m - sum(means) / p) ** 2 for m in means) / (p - 1) / p) if p > 1 else None)
    correct = [r["length"] for r in records if r["reason"] == "correct"]
    wrong = [r["length"] for r in records if r["reason"] != "correct"]
    found = [reflection_words(r["response"]) for r in records]
    verdicts = {}
    for r in records:
        verdicts[r["reason"]] = verdicts.get(r["reason"], 0) + 1
    return {
        "problems": p, "samples": len(records), "n": n,
        f"avg@{n}": _mean(means), "stderr": stderr,
        **{f"pass@{k}": _mean([pass_at_k(n, sum(v), k) for v in by_problem.values()]) for k in ks},
        "answer_rate": _mean([r["answer"] is not None for r in records]),
        "truncation_rate": _mean([r["finish_reason"] == "length" for r in records]),
        "length": _mean([r["length"] for r in records]), "length_correct": _mean(correct), "length_wrong": _mean(wrong),
        "verdicts": verdicts,
        "reflection": _mean([bool(w) for w in found]),
        "reflection_words": {w: _mean([w in words for words in found]) for w in REFLECTION_WORDS},
    }


# ---------------------------------------------------------------------------------------------
# Generation and grading


class EvalHFEngine(HFEngine):
    """HFEngine for evaluation: prompts go in longest first (little padding), and with `continuous` through
    transformers continuous batching (`model.generate_batch`): a sequence that finishes leaves the batch at once and
    the next prompt takes its place, so a batch never runs to its longest answer. Without it, length-sorted batches
    of `generate` (on this 2-core CPU continuous batching decoded 34 tok/s against generate's 64: docs/evaluation.md). At most
    batch_size sequences decode together; greedy answers are the same either way (tests/test_evaluate.py)."""

    def __init__(self, model, tokenizer, batch_size: int = 64, continuous: bool = True, static_cache: bool = False):
        super().__init__(model, tokenizer, batch_size=batch_size, static_cache=static_cache)
        self.continuous = continuous

    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]:
        ids = [self.tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        if not self.continuous:
            groups = super().generate([prompts[i] for i in order], params)
            return [group for _, group in sorted(zip(order, groups), key=lambda pair: pair[0])]
        from transformers import ContinuousBatchingConfig, GenerationConfig

        expanded = [i for i in order for _ in range(params.n)]
        sampling = params.temperature > 0
        config = GenerationConfig(max_new_tokens=params.max_new_tokens, do_sample=sampling,
                                  eos_token_id=end_ids(self.eos_ids, params),
                                  pad_token_id=self.tokenizer.pad_token_id,
                                  **(dict(temperature=params.temperature, top_p=params.top_p, top_k=0) if sampling else {}))
        # The KV cache holds batch_size sequences at full length (transformers' default fills 90 % of free memory,
        # on CPU the host's); on CPU, forwards of at most 512 tokens keep its attention masks small.
        cb = ContinuousBatchingConfig(seed=params.seed)
        page = getattr(cb, "page_size", None) or cb.block_size  # tokens per block (block_size before transformers 5.17)
        cb.num_blocks = self.batch_size * math.ceil((max(map(len, ids)) + params.max_new_tokens) / page)
        cb.max_batch_tokens = 512 if self.model.device.type == "cpu" else None
        self.model.eval()
        outputs = self.model.generate_batch([ids[i] for i in expanded], generation_config=config,
                                            continuous_batching_config=cb)
        # request ids are req_0, req_1, ... in the order given
        finished = sorted(outputs.values(), key=lambda out: int(out.request_id.rsplit("_", 1)[1]))
        if len(finished) != len(expanded) or any(out.error for out in finished):
            errors = [out.error for out in finished if out.error]
            raise RuntimeError(f"continuous batching returned {len(finished)} of {len(expanded)} sequences: {errors[:3]}")
        groups: list[list[Sample]] = [[] for _ in prompts]
        for i, out in zip(expanded, finished):
            groups[i].append(self._finish(ids[i], list(out.generated_tokens), params))
        return groups


# ---------------------------------------------------------------------------------------------
# The command


def checkpoint_template(model: str) -> str | None:
    """The template a checkpoint of ours was trained with (its trainer_state.json's config), else None. Raises
    UsageError naming the file when it is damaged (checkpoint.read_trainer_state)."""
    if not (Path(model) / "trainer_state.json").is_file():
        return None
    return read_trainer_state(Path(model))["config"].get("template")


def pass_ks(spec: str, n: int) -> list[int]:
    """--pass-k as a sorted list (default: the powers of two below n, and n). Raises UsageError for a k that is not
    an integer in 1..n."""
    try:
        ks = sorted({int(k) for k in spec.split(",") if k.strip()}) if spec.strip() else \
            sorted({2**i for i in range(n.bit_length()) if 2**i < n} | {n})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1 or ks[-1] > n:
        raise UsageError(f"--pass-k {spec!r}: each k must be an integer in 1..--n ({n})")
    return ks


def config_problems(cfg: EvalConfig) -> list[str]:
    """Everything wrong with the flags, one line each, before anything loads: every settings group's checks, then
    the ones that span groups (--compare auto needs --model's published row; the checkpoint's template)."""
    out = settings_problems(cfg)
    try:
        published_rows(cfg.compare, cfg.model)
        if cfg.template == "auto" and not out:
            checkpoint_template(cfg.model)
    except UsageError as error:
        out.append(str(error))
    if cfg.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        out.append("--engine vllm needs vllm: pip install -r requirements-vllm.txt (CPU) or requirements-gpu.txt (GPU)")
    return out


def build_engine(cfg: EvalConfig, engine: str, path: str, d: Dist, max_model_len: int):
    """The engine ("vllm" or "hf") for `path` on the rank's device (see the module docstring), in --dtype
    (model.resolve_dtype); vLLM is imported only here, with 0.9 of the GPU unless --vllm-gpu-memory-utilization."""
    dtype = resolve_dtype(cfg.dtype, d.device)
    if engine == "vllm":
        return vllm_engine(path, cfg, d.device, dtype, cfg.seed, max_model_len, gpu_share=0.9,
                           tensor_parallel_size=cfg.tensor_parallel_size)
    model, tokenizer = load_model(path, dtype=dtype, attn_implementation=cfg.attn_implementation)
    continuous = cfg.hf_batching == "continuous" or \
        (cfg.hf_batching == "auto" and d.device.type == "cuda" and not cfg.hf_static_cache)
    return EvalHFEngine(model.to(d.device), tokenizer, batch_size=cfg.batch_size, continuous=continuous,
                        static_cache=cfg.hf_static_cache)


def main(cfg: EvalConfig) -> dict[str, dict]:
    """Evaluate cfg.model on each benchmark; writes the per-sample JSONL and summary.json into the run directory
    --out-dir (rundir.run_directory: locked, config.json, refused when it holds anything but an earlier
    evaluation, which --overwrite deletes), prints the table.

    Returns {column: summarize() dict with its benchmark, temperature, top_p, seconds} (and "average"). Raises
    UsageError, before any model weights load and anything is written, for a bad flag, a missing or malformed
    benchmark file, a model config that does not load, a prompt that does not fit the model's context, or a refused
    --out-dir.
    """
    # an upstream's evaluation (--protocol): its benchmarks, sampling, extraction, grader
    cfg = apply_protocol(cfg, fields=PROTOCOL_FIELDS, eval_fields=True)
    if problems := config_problems(cfg):
        raise UsageError("\n".join(problems))
    columns = benchmark_columns(cfg.benchmarks)
    compare = published_rows(cfg.compare, cfg.model)
    template = cfg.template if cfg.template != "auto" else (checkpoint_template(cfg.model) or "qwen_math")
    problem_sets = {c.name: load_eval_set(c.benchmark, cfg.data_dir or None, cfg.limit or None) for c in columns}

    from transformers import AutoTokenizer

    context = getattr(load_model_config(cfg.model), "max_position_embeddings", None)
    path = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    longest = check_context({name: [apply_template(template, p.problem) for p in s.problems] for name, s in
                             problem_sets.items()}, tokenizer, cfg.max_new_tokens, context, "the model's context of")
    check_token_ids(cfg.stop_token_ids, tokenizer, "--stop-token-ids")
    d = setup_distributed()  # torchrun: the transformers engine is data parallel; one process: a world of one
    try:
        if d.world_size > 1 and cfg.engine == "vllm":
            raise UsageError("--engine vllm under torchrun: run one process with --tensor-parallel-size instead")
        config = {**asdict(cfg), "template": template, "world_size": d.world_size}
        with run_directory(Path(cfg.out_dir), config, d, overwrite=cfg.overwrite, writes=EVAL_WRITES):
            return evaluate(cfg, d, path, template, columns, problem_sets, compare, longest)
    finally:
        dist.destroy_process_group()


def evaluate(cfg: EvalConfig, d: Dist, path: str, template: str, columns: list[Column],
             problem_sets: dict[str, ProblemSet], compare: list[str], longest: int) -> dict[str, dict]:
    """The evaluation in cfg.out_dir (claimed by main): each rank generates and grades its share of each column
    (with the column's sampling, else the flags'), rank 0 gathers the records, writes them and the summary, and
    prints the table."""
    engine_name = cfg.engine if cfg.engine != "auto" else \
        ("vllm" if d.world_size == 1 and importlib.util.find_spec("vllm") else "hf")
    engine = build_engine(cfg, engine_name, path, d, max_model_len=longest + cfg.max_new_tokens)
    out_dir, names = Path(cfg.out_dir), [column.name for column in columns]
    summary: dict[str, dict] = {}
    with Grader(cfg.grader_timeout, cfg.grader_workers, cfg.grader) as grader, closing(engine):
        for column in columns:
            name, problem_set, n = column.name, problem_sets[column.name], column.n or cfg.n
            sampling = {"temperature": cfg.temperature if column.temperature is None else column.temperature,
                        "top_p": cfg.top_p if column.top_p is None else column.top_p}
            params = SamplingParams(n=n, **sampling, max_new_tokens=cfg.max_new_tokens, stop=list(cfg.stop),
                                    stop_token_ids=list(cfg.stop_token_ids),
                                    seed=cfg.seed + d.rank)
            start = time.perf_counter()
            problems = problem_set.problems[d.rank :: d.world_size]
            alternatives = column.benchmark in ("minerva_math", "minerva") and \
                (column.gold or cfg.minerva_gold) == "alternatives"
            golds = [(p.meta.get("answer_alternatives") or [p.answer]) if alternatives else [p.answer]
                     for p in problems]
            records = evaluate_problems(engine, problems, template, grader, params, golds, cfg.extraction)
            for r in records:
                r["index"] = d.rank + d.world_size * r["index"]  # the problem's position in the benchmark file
            if d.world_size > 1:
                gathered = [None] * d.world_size
                dist.all_gather_object(gathered, records)
                records = sorted((r for part in gathered for r in part), key=lambda r: (r["index"], r["sample"]))
            seconds = time.perf_counter() - start
            ks = pass_ks(cfg.pass_k if column.n is None else "", n)  # a column's own n: pass@1, 2, 4, ... n
            summary[name] = {**summarize(records, ks), "benchmark": column.benchmark, **sampling, "seconds": seconds,
                             "problems_per_s": len(problem_set.problems) / seconds if seconds else None}
            if d.is_main:
                write_jsonl(out_dir / f"{name}.jsonl", records)
                s, key = summary[name], f"avg@{n}"
                print(f"{name}: {key} {100 * s[key]:.1f} % of {s['problems']} problems, answer rate "
                      f"{100 * s['answer_rate']:.1f} %, {seconds:.0f} s; samples in {out_dir / name}.jsonl", flush=True)
    averaged = [column.name for column in columns if column.in_average]  # the paper's average (all but Zoo avg@32)
    summary["average"] = {key: _mean([summary[b][key] for b in averaged]) for key in
                          [f"avg@{cfg.n}", *[f"pass@{k}" for k in pass_ks(cfg.pass_k, cfg.n)]]
                          if all(key in summary[b] for b in averaged)}
    if d.is_main:
        write_atomic(out_dir / "summary.json", json.dumps(
            {"model": cfg.model, "template": template, "config": asdict(cfg), "benchmarks": summary}, indent=1))
        print(format_table(cfg.model, {b: summary[b] for b in names}, compare,
                           [column.name for column in columns if not column.in_average]))
    return summary


if __name__ == "__main__":
    cli("evaluate.py", EvalConfig, main)
