"""What each upstream does around the algorithm, one table (`PROTOCOLS`), as learn.ALGORITHMS is for the algorithm.

Two runs of the same algorithm differ in their numbers when the prompt, the answer extraction, the grader, the
reward rule, the stop strings, the loss aggregation, the KL estimator, the log-prob temperature or the evaluation
differ. A protocol names all of them for one upstream; `--protocol NAME` (train_zero.py, sft.py for the template,
evaluate.py) sets them, and any flag given its own value still wins:

    python train_zero.py --protocol simplerl_zoo --template abel       # the Zoo's protocol, another prompt
    python evaluate.py --protocol oat_zero --model sail/Qwen2.5-Math-7B-Oat-Zero

Resolution (apply): a field the protocol names takes the protocol's value when the config holds that field's
default; config.json and summary.json record the resolved values (and `protocol`).

| protocol | source |
| --- | --- |
| ours | this codebase's defaults: the embedded CPU task (docs/results.md) |
| simplerl_zero | hkust-nlp/simpleRL-reason branch v0 (OpenRLHF PPO): train/examples/script/train_ppo_qwen_base_math_lv35_new.sh, train/openrlhf/; evaluation through QwenLM/Qwen2.5-Math evaluation/ |
| simplerl_zoo | hkust-nlp/simpleRL-reason branch v1 (verl GRPO): train_grpo_math_tune_ray.sh, verl/utils/reward_score/hf_math_verify.py, verl's core_algos (agg_loss, kl_penalty) |
| oat_zero | sail-sg/understand-r1-zero: train_zero_math.py, understand_r1_zero/math_grader.py, evaluate_model.py; sail-sg/oat oat/algorithms/ppo.py |

Facts and their sources in prose: docs/papers.md §8. What each protocol does not reproduce is its `deviations`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EvalProtocol:
    """How an upstream evaluates: evaluate.py's flags."""

    benchmarks: str  # evaluate.py --benchmarks (a group prints the paper's table layout)
    n: int  # samples per problem
    temperature: float  # 0: greedy
    top_p: float
    max_new_tokens: int
    minerva_gold: str  # "answer" (the Qwen2.5-Math harness) or "alternatives" (understand-r1-zero)
    extraction: str  # reward.EXTRACTIONS: how the evaluation reads answers (the training reward may read otherwise)


@dataclass(frozen=True)
class Protocol:
    """One upstream's protocol. Every field but `source`, `deviations` and `eval` is a flag of train_zero.py (and,
    where it exists there, of evaluate.py and sft.py) of the same name."""

    source: str  # repository, branch and files it is read from
    template: str  # reward.TEMPLATES
    extraction: str  # reward.EXTRACTIONS: how the final answer is read from a response
    grader: str  # config.GraderSettings.grader: our layered check or math-verify
    grader_timeout: float  # seconds per sample
    reward: str  # reward rule (reward.REWARD_RULES)
    stop: tuple[str, ...]  # stop strings besides the tokenizer's EOS (and the template's own, reward.stop_strings)
    algo: str  # learn.ALGORITHMS
    loss_agg: str  # losses.AGGREGATIONS, or "algo"
    kl_estimator: str  # k1 | k2 | k3
    kl_in: str  # loss | reward
    kl_clamp: float  # 0: none
    logprob_temperature: str  # "sampling" (logits / T) or "1"
    shuffle_minibatches: bool  # the rollout batch shuffled before it is cut into mini-batches
    truncated: str  # keep | drop | zero_reward: a response cut by --max-new-tokens
    eval: EvalProtocol
    deviations: tuple[str, ...] = field(default=())  # what this codebase does not reproduce, one line each


HARNESS_STOPS = ("</s>", "<|im_end|>", "<|endoftext|>")  # the Qwen2.5-Math harness's stop strings (math_eval.py)

PROTOCOLS: dict[str, Protocol] = {
    "ours": Protocol(
        source="this codebase's defaults",
        template="auto", extraction="boxed", grader="zero_rl", grader_timeout=5.0, reward="correct", stop=(),
        algo="drgrpo", loss_agg="algo", kl_estimator="k3", kl_in="loss", kl_clamp=0.0, logprob_temperature="sampling",
        shuffle_minibatches=False, truncated="keep",
        eval=EvalProtocol("math500,gsm8k", 1, 0.0, 1.0, 3000, "answer", "boxed")),
    "simplerl_zero": Protocol(
        source="hkust-nlp/simpleRL-reason@v0 (OpenRLHF)",
        template="qwen_math", extraction="harness_if_boxed", grader="zero_rl", grader_timeout=10.0, reward="simplerl",
        stop=HARNESS_STOPS, algo="ppo", loss_agg="seq_mean_token_mean", kl_estimator="k1", kl_in="reward",
        kl_clamp=0.0, logprob_temperature="1", shuffle_minibatches=True, truncated="keep",
        eval=EvalProtocol("simplerl", 1, 0.0, 1.0, 3000, "answer", "qwen_harness"),
        deviations=("grading: our layered grader (docs/grader.md), not the Qwen2.5-Math harness's math_equal",
                    "prompt: v0's training prompts (its data file) lack the newline after 'assistant'")),
    "simplerl_zoo": Protocol(
        source="hkust-nlp/simpleRL-reason@v1 (verl)",
        template="qwen_boxed", extraction="qwen_harness", grader="math_verify", grader_timeout=10.0, reward="mix",
        stop=HARNESS_STOPS, algo="grpo", loss_agg="token_mean", kl_estimator="k3", kl_in="loss", kl_clamp=10.0,
        logprob_temperature="sampling", shuffle_minibatches=False, truncated="keep",
        eval=EvalProtocol("zoo", 1, 1.0, 0.95, 16000, "answer", "qwen_harness"),  # trained models; the Zoo decodes base models greedily
        deviations=("template: the Zoo chose a prompt per base model (its recipes set --template)",
                    "evaluation of a base model: the Zoo decodes greedily (pass --temperature 0 --top-p 1)",
                    "token_mean over the optimiser step's tokens; verl averages per micro-batch",
                    "stop strings end generation here; the Zoo generates on to EOS or the model's stop ids and cuts the "
                    "text at them only for the reward (it trains on what follows; for Qwen2.5 they are EOS tokens)")),
    "oat_zero": Protocol(
        source="sail-sg/understand-r1-zero, sail-sg/oat",
        template="qwen_math", extraction="boxed", grader="zero_rl", grader_timeout=1.0, reward="correct", stop=(),
        algo="drgrpo", loss_agg="algo", kl_estimator="k3", kl_in="loss", kl_clamp=0.0,
        logprob_temperature="sampling", shuffle_minibatches=True, truncated="zero_reward",
        eval=EvalProtocol("oat", 1, 0.0, 1.0, 3000, "alternatives", "boxed"),
        deviations=("grading: our layered grader, not oat's math_grader (docs/grader.md lists the disagreements)",)),
}


TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(Protocol) if f.name not in ("source", "eval", "deviations"))


def apply(cfg, name: str, fields: tuple[str, ...] = TRAIN_FIELDS, eval_fields: bool = False):
    """cfg with PROTOCOLS[name]'s values in every field of `fields` (and, with eval_fields, of EvalProtocol) that
    cfg has and that holds its class default; "" or unknown fields leave cfg as it is. Raises KeyError for an
    unknown protocol (the settings check names the choices first)."""
    if not name:
        return cfg
    protocol = PROTOCOLS[name]
    values = {f: getattr(protocol, f) for f in fields}
    if eval_fields:
        values.update(dataclasses.asdict(protocol.eval))
    defaults = type(cfg)()
    names = {f.name for f in dataclasses.fields(cfg)}
    return dataclasses.replace(cfg, **{key: value for key, value in values.items()
                                       if key in names and getattr(cfg, key) == getattr(defaults, key)})


def table() -> str:
    """Every protocol's settings as a markdown table (docs/protocols.md holds a copy; tests/test_protocols.py)."""
    rows = [*TRAIN_FIELDS, *(f"eval.{f.name}" for f in dataclasses.fields(EvalProtocol))]

    def cell(protocol: Protocol, key: str) -> str:
        value = getattr(protocol.eval, key[5:]) if key.startswith("eval.") else getattr(protocol, key)
        text = " ".join(value) or "-" if isinstance(value, tuple) else str(value)
        return text.replace("|", "\\|")  # markdown: a | inside a cell

    lines = ["| setting | " + " | ".join(PROTOCOLS) + " |", "| --- " * (len(PROTOCOLS) + 1) + "|"]
    lines += [f"| {key} | " + " | ".join(cell(p, key) for p in PROTOCOLS.values()) + " |" for key in rows]
    return "\n".join(lines)
