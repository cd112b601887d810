"""R1-Zero-like training: RL straight from a base model with a rule-based math reward.

One process (CPU or one GPU):
    python train_zero.py                                  # embedded default: SmolLM2-135M, add_one
    python train_zero.py --algo grpo --train-data ../shared/data/train/gsm8k_train.jsonl
    python train_zero.py --algo ppo                       # PPO with a critic (SimpleRL-Zero)
    python train_zero.py --algo grpo --kl-coef 1e-3 --kl-estimator k3   # KL loss (SimpleRL-Zoo)
    python train_zero.py --rollout-engine vllm           # vLLM sampling, weights synced and probed every step
N processes (DDP; gloo on CPU, nccl on GPU), each rank owning whole prompt groups:
    torchrun --nproc_per_node 8 train_zero.py --algo drgrpo
    torchrun --nproc_per_node 8 train_zero.py --model Qwen/Qwen2.5-Math-7B --shard fsdp --dtype bfloat16 \
        --gradient-checkpointing                          # sharded (FSDP2), bf16 compute; docs/scaling.md
Resume after a crash (same flags, same --out-dir):  python train_zero.py ... --resume

Every step (the loop at the end of this file, one line per stage):
    rollout (rollout.py) -> reward (reward.py) -> prepare batch: no-grad passes and advantages (learn.py)
    -> learn: clipped policy loss (and value loss) over micro-batches, optimiser step (learn.py, losses.py)
    -> weight sync into the engine (rollout.py) -> log (metrics.py) -> eval -> save (checkpoint.py)
What each --algo is: learn.ALGORITHMS. The models: model.py. Every setting, its default and why: config.py
(`--help` lists them, one heading per stage; sft.py and evaluate.py share its groups, so each is defined once).

Deviations from the papers, one line each (the learn stage's own are in learn.py's docstring):
- KL is off by default (Dr. GRPO); `--kl-in loss` is GRPO's loss term, `--kl-in reward` PPO's per-token penalty.
- PPO's critic is a zero-initialised value head on a copy of the base model (model.ValueModel).
- With --rollout-engine vllm, the update uses the trainer's log-probs as logp_old (the sampler's only enter
  through --tis-cap and the drift metrics), as the papers' vLLM-based runs do.
- Defaults are tuned for a 2-core CPU and a 135M model, not the papers' 7B runs (docs/papers.md §4).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from checkpoint import NonFiniteWeights, load_checkpoint, save_checkpoint
from config import Config, apply_protocol
from data import (BENCHMARKS, EVAL_GROUPS, PROCEDURAL_SETS, Problem, ProblemSet, UsageError, load_eval_set,
                  load_train_data, step_indices)
from distributed import Dist, all_reduce, print0, setup_distributed
from grader_pool import Grader
from learn import ALGORITHMS, Diverged, DivergenceGuard, adamw, learn, learn_critic, lr_factor, prepare_batch, set_lr
from metrics import (append_logs, collapse_warning, eval_line, learn_tokens_per_s, peak_memory_gb, run_summary,
                     step_metrics, step_sums)
from losses import TokenLogProbs
from model import (ValueModel, check_context, check_token_ids, distribute, enable_gradient_checkpointing,
                   frozen_copy, load_model, load_model_config, resolve_dtype, resolve_model, unwrap)
from plot import write_run_figure
from reward import apply_template, compute_rewards, stop_strings
from rollout import HFEngine, NonFiniteLogits, Sample, SamplingParams
from rundir import cli, external_loggers, run_directory, settings_problems, truncate_logs

DEFAULT_PROMPTS_PER_STEP = 4  # --prompts-per-step 0: this many, rounded up to a multiple of the world size


def resolve_auto(cfg: Config, world_size: int = 1) -> Config:
    """cfg with its "auto" settings resolved, as config.json records them: --template and --eval-data (the embedded
    default's chat_oneshot and add_one for the add_one set; otherwise qwen_boxed, and the built-in --train-data set
    itself or else arithmetic for the eval), --dtype (model.resolve_dtype: bfloat16 on a GPU, float32 on CPU), and
    --prompts-per-step 0 (4, rounded up to a multiple of world_size, so the default runs on any number of ranks:
    `torchrun --nproc_per_node 8 train_zero.py` takes 8 prompts a step, one per rank)."""
    template = cfg.template if cfg.template != "auto" else \
        ("chat_oneshot" if cfg.train_data == "add_one" else "qwen_boxed")
    eval_data = (cfg.train_data if cfg.train_data in PROCEDURAL_SETS else "arithmetic") if cfg.eval_data == "auto" \
        else cfg.eval_data
    dtype = str(resolve_dtype(cfg.dtype)).removeprefix("torch.")
    prompts = cfg.prompts_per_step or -(-DEFAULT_PROMPTS_PER_STEP // world_size) * world_size
    return replace(cfg, template=template, eval_data=eval_data, dtype=dtype, prompts_per_step=prompts)


def config_problems(cfg: Config, world_size: int) -> list[str]:
    """Everything wrong with the flags, one line each, found without loading anything: every settings group's own
    checks (rundir.settings_problems), then the ones that span groups."""
    out = settings_problems(cfg)
    if cfg.prompts_per_step >= 1 and cfg.prompts_per_step % world_size:
        out.append(f"--prompts-per-step {cfg.prompts_per_step}: must be a multiple of the world size {world_size}")
    known = (*BENCHMARKS, "minerva", *PROCEDURAL_SETS, *EVAL_GROUPS, "auto")
    unknown = [n for n in cfg.eval_data.split(",") if n not in known]
    if cfg.eval_every and unknown:
        out.append(f"--eval-data {cfg.eval_data}: unknown {', '.join(unknown)}; use {', '.join(known[:-1])}")
    if cfg.tis_cap > 0 and cfg.rollout_engine != "vllm":
        out.append(f"--tis-cap {cfg.tis_cap}: needs the sampler's log-probs; use --rollout-engine vllm")
    if cfg.ref_offload and cfg.shard != "fsdp":
        out.append("--ref-offload needs --shard fsdp (FSDP2's CPU offload)")
    if cfg.dtype == "float16":
        out.append("--dtype float16: training in fp16 needs loss scaling, which this trainer does not do; use bfloat16")
    return out


def load_data(cfg: Config) -> tuple[ProblemSet, dict[str, ProblemSet]]:
    """The training problems and the eval sets (none without --eval-every), after checking that the model's config
    loads and that every templated prompt plus --max-new-tokens fits the context (the model's, or vLLM's
    --vllm-max-model-len): all before the run directory is claimed, so a bad file or model refuses the run with
    nothing written. Raises UsageError (DataError names file:line)."""
    from transformers import AutoTokenizer

    train_set = load_train_data(cfg.train_data, cfg.levels or None, cfg.seed, cfg.data_dir or None)
    eval_sets = {name: load_eval_set(benchmark, cfg.data_dir or None, cfg.eval_limit)
                 for name, (benchmark, _) in eval_columns(cfg.eval_data).items()} if cfg.eval_every else {}
    context = load_model_config(cfg.model).max_position_embeddings
    limit, what = (cfg.vllm_max_model_len, "--vllm-max-model-len") if cfg.rollout_engine == "vllm" else \
        (context, "the model's max_position_embeddings")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
    check_context({name: [apply_template(cfg.template, p.problem) for p in s.problems]
                   for name, s in {"--train-data": train_set, **eval_sets}.items()},
                  tokenizer, cfg.max_new_tokens, limit, what)
    check_token_ids(cfg.stop_token_ids, tokenizer, "--stop-token-ids")
    return train_set, eval_sets


TRAIN_WRITES = ("metrics.jsonl", "samples.jsonl", "metrics.png", "checkpoints", "tensorboard", "wandb")  # in out_dir


# ---------------------------------------------------------------------------------------------
# Models and engine


@dataclass
class Models:
    model: torch.nn.Module  # the policy's HF causal LM (what is saved, synced and evaluated)
    tokenizer: object
    policy: torch.nn.Module  # TokenLogProbs over `model`, wrapped by model.distribute (DDP or FSDP)
    optimizer: torch.optim.Optimizer
    critic: torch.nn.Module | None = None  # ValueModel, wrapped by model.distribute (PPO)
    critic_optimizer: torch.optim.Optimizer | None = None
    reference: torch.nn.Module | None = None  # frozen TokenLogProbs of the starting model (--kl-coef > 0)

    @property
    def value_model(self) -> torch.nn.Module | None:
        return unwrap(self.critic) if self.critic else None  # the ValueModel for no-grad passes and checkpoints


def build_models(cfg: Config, d: Dist, checkpoint: Path | None) -> Models:
    """The policy (from the checkpoint when resuming), its optimiser, and the critic / reference the algorithm needs.

    Weights load in fp32 (the master copy) and are wrapped by model.distribute (--shard); optimisers are built
    on the wrapped (possibly sharded) parameters.
    """
    compute = resolve_dtype(cfg.dtype, d.device)

    def base(name: str, trained: bool = True):  # an HF causal LM in fp32 on the rank's device, and its tokenizer
        lm, tokenizer = load_model(name, attn_implementation=cfg.attn_implementation)
        if trained and cfg.gradient_checkpointing:
            enable_gradient_checkpointing(lm)
        return lm.to(d.device).train(trained), tokenizer

    model, tokenizer = base(str(checkpoint) if checkpoint else cfg.model)
    temperature = cfg.temperature if cfg.logprob_temperature == "sampling" else 1.0  # of the ratio's and KL's log-probs
    policy = distribute(TokenLogProbs(model, temperature, cfg.logprob_chunk_size, compute), cfg.shard, compute)
    m = Models(model, tokenizer, policy, adamw(model, cfg))
    if ALGORITHMS[cfg.algo].critic:  # a value head on a copy of the base model (SimpleRL-Zero), its own optimiser
        m.critic = distribute(ValueModel(base(cfg.model)[0], compute).to(d.device), cfg.shard, compute)
        m.critic_optimizer = adamw(m.critic, cfg, critic=True)
    if cfg.kl_coef > 0:  # the starting policy (the base model, also after a resume), frozen
        reference = frozen_copy(base(cfg.model, trained=False)[0], temperature, cfg.logprob_chunk_size, compute)
        m.reference = distribute(reference, cfg.shard, compute, offload=cfg.ref_offload)
    return m


def make_engine(cfg: Config, model, policy, tokenizer, checkpoint: Path | None, d: Dist,
                optimizers: tuple[torch.optim.Optimizer, ...] = ()):
    """HFEngine on the live model; or, under --shard fsdp, on its own unsharded copy (in --dtype), refreshed by
    sync_weights after every optimiser step (no rank holds the whole live model); or, with --rollout-engine vllm, one
    VLLMEngine per rank (scale.vllm_engine.training_engine). model: the policy's HF module; policy: its
    TokenLogProbs."""
    if cfg.rollout_engine == "vllm":
        from scale.vllm_engine import training_engine

        return training_engine(cfg, model, policy, checkpoint, d, optimizers)
    if cfg.shard == "ddp":
        return HFEngine(model, tokenizer, static_cache=cfg.hf_static_cache)
    copy = load_model(str(checkpoint) if checkpoint else cfg.model, resolve_dtype(cfg.dtype, d.device),
                      cfg.attn_implementation)[0]
    engine = HFEngine(copy.to(d.device).requires_grad_(False), tokenizer, own_copy=True,
                      static_cache=cfg.hf_static_cache)
    engine.sync_weights(model)
    return engine


# ---------------------------------------------------------------------------------------------
# The stages of one step that live here: data order, sampling, weight sync


def problems_for_step(problems: list, step: int, cfg: Config, d: Dist) -> list:
    """The rank's share of step `step`'s prompts (data.step_indices: a fresh seeded shuffle each epoch, a pure
    function of seed and step, so a resumed run sees the same prompts)."""
    order = step_indices(len(problems), step, cfg.prompts_per_step, cfg.seed, d.rank, d.world_size)
    return [problems[i] for i in order]


def rollout(engine, problems: list, cfg: Config, step: int, rank: int) -> list[Sample]:
    """group_size samples per problem (grouped, in problem order), seeded by (seed, step, rank); then the engine
    sleeps."""
    params = SamplingParams(cfg.group_size, cfg.temperature, cfg.top_p, cfg.max_new_tokens,
                            [*stop_strings(cfg.template), *cfg.stop], list(cfg.stop_token_ids),
                            seed=cfg.seed * 1_000_003 + step * 1_009 + rank)
    try:
        groups = engine.generate([apply_template(cfg.template, p.problem) for p in problems], params)
    except NonFiniteLogits as error:  # a finite but too large update (--lr far too high) overflowed the logits
        raise Diverged(f"step {step + 1}: {error} in the last update; start again with a lower --lr (into another "
                       f"--out-dir, or --overwrite)") from error
    engine.sleep()  # GPU sleep mode: free the engine's memory while the trainer learns (else no-op)
    return [s for group in groups for s in group]


def sync_engine(engine, model, policy, step: int, cfg: Config) -> tuple[float, dict]:
    """Push the new weights into the engine, then the probe when due; returns (sync seconds, probe metrics).

    The transformers engine samples from the live model: its sync takes 0 s and its probe measures nothing.
    Raises RuntimeError when the probe fails (weights out of sync).
    """
    engine.wake_up()
    seconds = engine.sync_weights(model)
    if not (cfg.probe_every and (step + 1) % cfg.probe_every == 0):
        return seconds, {}
    start = time.perf_counter()
    diff = engine.probe(policy, tolerance=cfg.probe_tolerance)
    return seconds, {} if diff is None else {"probe_max_abs_diff": diff, "time_probe": time.perf_counter() - start}


# ---------------------------------------------------------------------------------------------
# Eval: greedy pass@1 on held-out problems (evaluate.py builds the papers' tables on evaluate_problems)


def eval_columns(spec: str) -> dict[str, tuple[str, bool]]:
    """--eval-data as {column: (benchmark, graded against answer_alternatives)}: each comma-separated name a benchmark
    or procedural set, or a paper's group (data.EVAL_GROUPS: its benchmarks from fidelity/published.py, each with its
    gold rule, Oat's Minerva any of answer_alternatives). The in-training eval is greedy pass@1, so a column that
    samples several times (the Zoo's AIME avg@32) is left out."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not any(name in EVAL_GROUPS for name in names):
        return {name: (name, False) for name in names}
    from fidelity.published import benchmark_columns

    return {c.name: (c.benchmark, c.gold == "alternatives") for c in benchmark_columns(spec) if not c.n}


def evaluate_problems(engine, problems: list[Problem], template: str, grader: Grader, params: SamplingParams,
                      golds: list[list[str]] | None = None, extraction: str = "boxed") -> list[dict]:
    """Sample params.n responses per problem and grade each; returns one record per (problem, sample).

    Each record: index (the problem's position in `problems`), sample (0..n-1), problem, gold, response, answer
    (extracted or None), reason (the verdict: "correct" | "wrong" | "parse_error" (the answer could not be parsed
    to compare beyond strings) | "timeout" | "no_answer"), finish_reason, length (response tokens, EOS included).
    golds: per problem, the accepted answers (correct when any grades equal; the first one's verdict otherwise);
    default [problem.answer]. Same template, stop strings (the template's and params.stop) and grader as training;
    extraction: reward.EXTRACTIONS.
    """
    if not problems:
        return []
    golds = golds or [[p.answer] for p in problems]
    prompts = [apply_template(template, p.problem) for p in problems]
    params = SamplingParams(**{**asdict(params), "stop": [*stop_strings(template), *params.stop]})
    groups = engine.generate(prompts, params)
    flat = [(i, j, s) for i, group in enumerate(groups) for j, s in enumerate(group)]
    texts, gold_of = [], []
    for i, _, s in flat:
        texts += [s.text] * len(golds[i])
        gold_of += golds[i]
    verdicts = iter(compute_rewards(texts, gold_of, template, "correct", grader, extraction=extraction))
    records = []
    for i, j, s in flat:
        results = [next(verdicts) for _ in golds[i]]
        result = next((r for r in results if r.reason == "correct"), results[0])
        records.append({"index": i, "sample": j, "problem": problems[i].problem, "gold": golds[i][0],
                        "response": s.text, "answer": result.answer, "reason": result.reason,
                        "finish_reason": s.finish_reason, "length": len(s.response_ids)})
    return records


def eval_metrics(engine, eval_sets: dict, template: str, grader: Grader, max_new_tokens: int, d: Dist,
                 extraction: str = "boxed", stop: tuple[str, ...] = (), stop_token_ids: tuple[int, ...] = (),
                 alternatives: frozenset[str] = frozenset()) -> dict:
    """Training's held-out eval row: greedy pass@1 per eval set ("eval/<name>"), its standard error
    ("eval/<name>/stderr": sqrt(p (1 - p) / (n - 1)), summarize()'s stderr for one sample per problem; None for
    n < 2), the answer rate ("eval/<name>/answer_rate") and the mean response length in tokens ("eval/<name>/length").

    Each rank decodes its share of the problems; the counts are summed over ranks. A set named in `alternatives`
    counts a response correct when it equals any of a problem's answer_alternatives (Oat's Minerva rule).
    """
    row = {}
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, stop=list(stop),
                            stop_token_ids=list(stop_token_ids))
    for name, problem_set in eval_sets.items():
        share = problem_set.problems[d.rank :: d.world_size]
        golds = [p.meta.get("answer_alternatives") or [p.answer] for p in share] if name in alternatives else None
        records = evaluate_problems(engine, share, template, grader, params, golds, extraction)
        counts = torch.tensor([sum(r["reason"] == "correct" for r in records),
                               sum(r["reason"] != "no_answer" for r in records), len(records),
                               sum(r["length"] for r in records)], dtype=torch.float64)
        all_reduce(counts)
        correct, answered, n, tokens = counts.tolist()
        accuracy = correct / max(n, 1)
        row[f"eval/{name}"] = accuracy
        row[f"eval/{name}/stderr"] = math.sqrt(accuracy * (1 - accuracy) / (n - 1)) if n > 1 else None
        row[f"eval/{name}/answer_rate"] = answered / max(n, 1)
        row[f"eval/{name}/length"] = tokens / max(n, 1)
    return row


def evaluation(engine, eval_sets: dict, cfg: Config, grader, d: Dist) -> dict:
    """The held-out eval row (eval_metrics) with the run's template, budget, extraction, stop strings and each set's
    gold rule."""
    alternatives = frozenset(name for name, (_, any_of) in eval_columns(cfg.eval_data).items() if any_of)
    return eval_metrics(engine, eval_sets, cfg.template, grader, cfg.max_new_tokens, d, cfg.extraction, cfg.stop,
                        cfg.stop_token_ids, alternatives)


def due(every: int, step: int, steps: int) -> bool:
    """Whether an every-N action (eval, save) runs after step `step` (0-based): every N steps and at the end."""
    return bool(every) and ((step + 1) % every == 0 or step + 1 == steps)


# ---------------------------------------------------------------------------------------------
# The loop


def main(cfg: Config) -> list[dict]:
    """Train; returns the metrics rows of this run (rank 0's view, identical on every rank).

    Raises UsageError, with nothing written and no weights loaded, for bad flags (all of them), data that do not
    load, a model config that does not load, a prompt longer than the context, a run directory in use or holding
    something else, or a refused --resume; Diverged / NonFiniteWeights when training diverges.
    """
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    cfg = resolve_auto(apply_protocol(cfg), world_size)
    if problems := config_problems(cfg, world_size):
        raise UsageError("\n".join(problems))
    d = setup_distributed()
    try:
        train_set, eval_sets = load_data(cfg)
        with run_directory(Path(cfg.out_dir), {**asdict(cfg), "world_size": d.world_size}, d, cfg.resume,
                           cfg.overwrite, TRAIN_WRITES) as checkpoint:
            history = train(cfg, d, checkpoint, train_set, eval_sets)  # the DDP modules are freed when train returns
            dist.barrier()  # no rank tears down the group while another still communicates
        return history
    finally:
        dist.destroy_process_group()


def train(cfg: Config, d: Dist, checkpoint: Path | None, train_set: ProblemSet,
          eval_sets: dict[str, ProblemSet]) -> list[dict]:
    """The run in cfg.out_dir (claimed by main: locked, config.json written), from `checkpoint` when resuming."""
    # --- 1. setup
    out_dir, started = Path(cfg.out_dir), time.perf_counter()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    print0(d, f"config: {out_dir / 'config.json'} (every setting, resolved)")
    # --- 2. data (loaded and checked by main)
    print0(d, f"train data {train_set.path}: {len(train_set.problems)} problems "
              f"({train_set.skipped_empty} empty answers skipped)")
    # --- 3. models, optimisers, engine, grader (or all of them from the last checkpoint)
    m = build_models(cfg, d, checkpoint)
    start_step = 0
    if checkpoint:
        start_step = load_checkpoint(checkpoint, asdict(cfg), d, m.model, m.optimizer, m.value_model,
                                     m.critic_optimizer)
        print0(d, f"resumed from {checkpoint} at step {start_step}")
    scorer = unwrap(m.policy)  # the TokenLogProbs of the no-grad passes (DDP's .module; under FSDP the sharded root)
    engine = make_engine(cfg, m.model, scorer, m.tokenizer, checkpoint, d,
                         tuple(o for o in (m.optimizer, m.critic_optimizer) if o))
    mfu = None  # the learn phase's model FLOPs utilisation: on a GPU with a known peak, or with --peak-tflops
    if d.device.type == "cuda" or cfg.peak_tflops > 0:
        from scale.mfu import learn_flops

        mfu = learn_flops(m.model, scorer, m.reference and unwrap(m.reference), m.value_model, d.device,
                          cfg.peak_tflops)
    if d.is_main:
        truncate_logs(out_dir, start_step)  # a resumed run rewrites the rows after its checkpoint
    pad = m.tokenizer.pad_token_id

    # --- 4. the loop (the grader's workers, the engine and the loggers are closed at the end, also on an error)
    with ExitStack() as cleanup:
        cleanup.callback(engine.close)
        grader = cleanup.enter_context(Grader(cfg.grader_timeout, cfg.grader_workers, cfg.grader))
        loggers = cleanup.enter_context(external_loggers(cfg.log_with if d.is_main else (), out_dir, asdict(cfg),
                                                        start_step, cfg.wandb_project, cfg.wandb_mode))
        history, guard = [], DivergenceGuard(cfg.max_bad_steps)
        if cfg.eval_every and start_step == 0:  # the "before": step 0 holds the eval of the starting model
            history.append({"step": 0, **evaluation(engine, eval_sets, cfg, grader, d)})
            if d.is_main:
                append_logs(out_dir, history[-1])
                loggers.log(history[-1])
                print(eval_line(history[-1]), flush=True)
        peak_memory_gb(d.device)  # each row's peak_memory_gb on CUDA covers the time since the previous row
        bar = tqdm(range(start_step, cfg.steps), initial=start_step, total=cfg.steps, disable=not d.is_main,
                   desc="train")
        for step in bar:
            # rollout: this rank's prompts, group_size samples each
            t0 = time.perf_counter()
            problems = problems_for_step(train_set.problems, step, cfg, d)
            samples = rollout(engine, problems, cfg, step, d.rank)
            # reward
            t1 = time.perf_counter()
            golds = [p.answer for p in problems for _ in range(cfg.group_size)]
            results = compute_rewards([s.text for s in samples], golds, cfg.template, cfg.reward, grader,
                                      extraction=cfg.extraction)
            # prepare batch (no-grad passes, advantages), then learn (policy, and the critic for PPO)
            t2 = time.perf_counter()
            if mfu:
                mfu.take()  # from here on: the learn phase's passes
            batch = prepare_batch(samples, [r.score for r in results], scorer, m.reference, m.value_model,
                                  cfg, pad, d, shuffle_seed=cfg.seed * 1_000_003 + step * 1_009 + d.rank + 7)
            factor = lr_factor(step, cfg)
            set_lr(m.optimizer, cfg.lr * factor)
            set_lr(m.critic_optimizer, cfg.critic_lr * factor)
            policy_stats = learn(m.policy, m.optimizer, batch, cfg, d, pad)
            critic_stats = learn_critic(m.critic, m.critic_optimizer, batch, cfg, d, pad) \
                if m.critic else None
            # sync the engine's weights (and probe them)
            t3 = time.perf_counter()
            sync_seconds, probe = sync_engine(engine, m.model, scorer, step, cfg)
            # log
            sums = step_sums(batch, results, cfg.group_size)
            row = {"step": step + 1, **step_metrics(sums, policy_stats, critic_stats, batch.drift, d)}
            row.update({"lr": cfg.lr * factor, "time_rollout": t1 - t0, "time_reward": t2 - t1, "time_learn": t3 - t2,
                        "time_sync": sync_seconds, "tokens_per_s": row["generated_tokens"] / max(t1 - t0, 1e-9),
                        "peak_memory_gb": peak_memory_gb(d.device), **probe,
                        "learn_tokens_per_s": learn_tokens_per_s(samples, t3 - t2),
                        **({"mfu": mfu.utilisation(t3 - t2, d)} if mfu else {})})
            # eval
            if due(cfg.eval_every, step, cfg.steps):
                row.update(evaluation(engine, eval_sets, cfg, grader, d))
            history.append(row)
            if d.is_main and cfg.trace and step == start_step:  # a lesson: one group through every stage
                from steptrace import format_trace

                G = cfg.group_size
                tqdm.write(format_trace(apply_template(cfg.template, problems[0].problem), samples[:G], results[:G],
                                        batch.advantages[:G], row, cfg))
            if d.is_main:
                append_logs(out_dir, row, problems, samples, results, cfg.log_samples, cfg.group_size)
                loggers.log(row)
                bar.set_postfix(reward=f"{row['reward_mean']:.2f}", acc=f"{row['accuracy']:.2f}",
                                len=f"{row['response_length_mean']:.0f}")
                if due(cfg.eval_every, step, cfg.steps):
                    tqdm.write(eval_line(row))
                if warning := collapse_warning(row, cfg.group_size):
                    tqdm.write(f"warning: {warning}", file=sys.stderr)
                if due(cfg.eval_every, step, cfg.steps) or step + 1 == cfg.steps:
                    write_run_figure(out_dir)  # out_dir/metrics.png (plot.py)
            # divergence guard: updates with a non-finite loss or grad norm were skipped (learn.clipped_step)
            guard.check(step, bool(row["skipped_updates"] or row.get("critic_skipped_updates")))
            # save
            if due(cfg.save_every, step, cfg.steps):
                save_checkpoint(out_dir, step + 1, m.model, m.tokenizer, m.optimizer, asdict(cfg), d, m.value_model,
                                m.critic_optimizer)
    if d.is_main:
        bar.close()
        print(run_summary(out_dir, history, time.perf_counter() - started), flush=True)
    return history


if __name__ == "__main__":
    cli("train_zero.py", Config, main, stops=(Diverged, NonFiniteWeights, NonFiniteLogits))
