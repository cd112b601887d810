"""sft.py: the targets (GSM8K ####, MATH, procedural, r1), dropped pairs, prompt-token masking against a hand
computation, the loss falling on a handful of pairs, exact resume, and its checkpoint feeding train_zero.py and
evaluate.py."""

import json
from dataclasses import replace

import pytest
import torch

from data import Problem, UsageError, add_one_problems, arithmetic_problems
from evaluate import checkpoint_template
from grader_pool import Grader
from learn import collate
from sft import SFTConfig, build_pairs, main, sft_target, target_nll

GSM8K_SOLUTION = "She eats 3 + 4 = <<3+4=7>>7 eggs.\nShe sells 16 - 7 = <<16-7=9>>9 for $2 each: 9 * 2 = $<<9*2=18>>18.\n#### 1,018"


def test_targets_end_in_the_templates_answer_format():
    gsm = Problem("q", "1018", "gsm8k", meta={"solution": GSM8K_SOLUTION})
    target = sft_target(gsm, "qwen_math")
    assert target.endswith("The answer is \\boxed{1018}.") and "<<" not in target and "####" not in target
    assert target.startswith("She eats 3 + 4 = 7 eggs.")
    math_row = Problem("q", "\\frac{1}{2}", "math", 3, {"solution": "Halve it: $\\boxed{\\frac{1}{2}}$."})
    assert sft_target(math_row, "qwen_boxed") == "Halve it: $\\boxed{\\frac{1}{2}}$."
    assert sft_target(arithmetic_problems(1, seed=0)[0], "chat_oneshot").endswith(f"= \\boxed{{{arithmetic_problems(1)[0].answer}}}")
    assert sft_target(add_one_problems(1, seed=0)[0], "qwen_boxed") == \
        f"{add_one_problems(1)[0].meta['expression']} = \\boxed{{{add_one_problems(1)[0].answer}}}"
    r1 = sft_target(Problem("What is 2 + 3?", "5", meta={"expression": "2 + 3"}), "r1")
    assert r1 == " 2 + 3 = \\boxed{5} </think> <answer> 5 </answer>"
    assert sft_target(Problem("q", "1"), "qwen_math") is None


def test_pairs_drop_and_count_mismatched_long_and_unsolved_problems(tokenizer):
    problems = [Problem("q1", "18", meta={"solution": "So \\boxed{18}."}),
                Problem("q2", "19", meta={"solution": "So \\boxed{18}."}),  # the solution disagrees with the gold
                Problem("q3", "7", meta={"solution": "word " * 300 + "\\boxed{7}"}),  # too long
                Problem("q4", "7")]  # nothing to learn from
    with Grader(workers=1) as grader:
        pairs, dropped = build_pairs(problems, "qwen_boxed", tokenizer, 128, grader)
    assert dropped == {"no_solution": 1, "answer_mismatch": 1, "too_long": 1} and len(pairs) == 1
    prompt_ids, target_ids = pairs[0]
    assert target_ids[-1] == tokenizer.eos_token_id and tokenizer.decode(target_ids[:-1]) == "So \\boxed{18}."


def test_the_loss_counts_target_tokens_only(tiny_model, tokenizer):
    """target_nll against a hand computation from the model's logits: the sum over target tokens of
    -log p(token | prefix); prompt tokens and padding contribute nothing."""
    from losses import TokenLogProbs

    pairs = [([5, 6, 7], [8, 9]), ([5, 6], [10, 11, 12])]
    ids, attention, score = collate(pairs, tokenizer.pad_token_id, torch.device("cpu"))
    assert score.tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]
    nll = target_nll(TokenLogProbs(tiny_model), pairs, tokenizer.pad_token_id, torch.device("cpu"))
    by_hand = 0.0
    for prompt, target in pairs:
        seq = torch.tensor([prompt + target])
        logp = torch.log_softmax(tiny_model(seq).logits[0].float(), -1)
        by_hand -= sum(logp[len(prompt) - 1 + j, token].item() for j, token in enumerate(target))
    assert nll.item() == pytest.approx(by_hand, rel=1e-5)
    changed = [([99, 98, 97], [8, 9]), ([5, 6], [10, 11, 12])]  # other prompt tokens change the context, not the mask
    _, _, score2 = collate(changed, tokenizer.pad_token_id, torch.device("cpu"))
    assert torch.equal(score, score2)


def write_math_file(path, n=12):
    rows = [{"problem": f"What is {a} times 2?", "answer": str(2 * a), "solution": f"Twice {a} is $\\boxed{{{2 * a}}}$."}
            for a in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def sft_config(model_dir, tmp_path, **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = dict(model=model_dir, train_data=write_math_file(tmp_path / "train.jsonl"), template="qwen_boxed",
                holdout=4, steps=4, batch_size=4, micro_batch_size=3, lr=1e-2, warmup_ratio=0.0, lr_schedule="constant",
                out_dir=str(tmp_path / "sft"), eval_every=2, save_every=2, grader_workers=1)
    return SFTConfig(**{**base, **overrides})


def test_loss_falls_when_overfitting_a_handful_of_pairs(tiny_model_dir, tmp_path):
    rows = main(sft_config(tiny_model_dir, tmp_path, steps=12, save_every=0, eval_every=12))
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"] and rows[-1]["grad_norm"] > 0
    assert rows[-1]["eval_loss"] > 0 and all(r["target_tokens"] > 0 for r in rows)
    config = json.loads((tmp_path / "sft" / "config.json").read_text())
    assert config["data"] == {"train_pairs": 8, "held_out": 4, "dropped": {"no_solution": 0, "answer_mismatch": 0, "too_long": 0}}


def test_mfu_is_logged_with_a_peak(tiny_model_dir, tmp_path, monkeypatch):
    """--peak-tflops: each row's mfu is the step's model FLOPs (scale.mfu.LearnFlops) over time_step x the peak."""
    from scale.mfu import LearnFlops

    taken, take = [], LearnFlops.take
    monkeypatch.setattr(LearnFlops, "take", lambda self: taken.append(take(self)) or taken[-1])
    rows = main(sft_config(tiny_model_dir, tmp_path, steps=1, save_every=0, eval_every=0, peak_tflops=1e-3))
    assert taken[-1] > 0 and rows[0]["mfu"] == pytest.approx(taken[-1] / (rows[0]["time_step"] * 1e9), rel=1e-9)
    assert "mfu" not in main(sft_config(tiny_model_dir, tmp_path / "cpu", steps=1, save_every=0, eval_every=0))[0]


def test_resume_continues_exactly_and_the_checkpoint_feeds_rl_and_evaluate(tiny_model_dir, tmp_path, parity_reward):
    straight = main(sft_config(tiny_model_dir, tmp_path / "a", steps=4))
    main(sft_config(tiny_model_dir, tmp_path / "b", steps=2))
    resumed = main(sft_config(tiny_model_dir, tmp_path / "b", steps=4, resume=True))
    timing = ("tokens_per_s", "time_step", "mfu")
    assert [{k: v for k, v in r.items() if k not in timing} for r in straight[2:]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in resumed]
    lines = (tmp_path / "b" / "sft" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    checkpoint = tmp_path / "b" / "sft" / "checkpoints" / "step_000004"
    assert checkpoint_template(str(checkpoint)) == "qwen_boxed"
    from train_zero import Config
    from train_zero import main as train

    rows = train(Config(model=str(checkpoint), out_dir=str(tmp_path / "rl"), steps=1, prompts_per_step=2, group_size=2,
                        max_new_tokens=4, eval_every=0, save_every=0, template="qwen_boxed", train_data="arithmetic"))
    assert rows[0]["step"] == 1 and rows[0]["grad_norm"] > 0


def test_bad_flags_and_unlearnable_data_are_refused(tiny_model_dir, tmp_path):
    with pytest.raises(UsageError, match="--batch-size 0"):
        main(sft_config(tiny_model_dir, tmp_path, batch_size=0))
    with pytest.raises(UsageError, match="--template"):
        main(sft_config(tiny_model_dir, tmp_path, template="qwen"))
    with pytest.raises(UsageError, match="not more than --holdout 64"):
        main(sft_config(tiny_model_dir, tmp_path, holdout=64))


def test_sft_config_is_the_cli(tmp_path):
    import tyro

    cfg = tyro.cli(SFTConfig, args=["--train-data", "add_one", "--steps", "3", "--adam-betas", "0.9", "0.99"])
    assert replace(cfg, out_dir="x").steps == 3 and cfg.adam_betas == (0.9, 0.99)


def test_two_fsdp_ranks_learn_what_one_process_learns(tiny_model_dir, tmp_path):
    """torchrun, 2 ranks, --shard fsdp against one DDP process on the same batches: the same losses."""
    import subprocess
    import sys

    cfg = sft_config(tiny_model_dir, tmp_path, steps=3, save_every=3, eval_every=3)
    flags = ["--model", cfg.model, "--train-data", cfg.train_data, "--template", cfg.template, "--holdout", "4",
             "--steps", "3", "--batch-size", "4", "--micro-batch-size", "1", "--lr", "1e-2", "--lr-schedule",
             "constant", "--warmup-ratio", "0", "--eval-every", "3", "--save-every", "3", "--grader-workers", "1"]
    one = main(replace(cfg, micro_batch_size=1, out_dir=str(tmp_path / "one")))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "sft.py",
                        *flags, "--shard", "fsdp", "--out-dir", str(tmp_path / "two")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    two = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(one, two):
        for key in ("loss", "grad_norm", "target_tokens", "eval_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4), key
    assert (tmp_path / "two" / "checkpoints" / "step_000003" / "model.safetensors").exists()
