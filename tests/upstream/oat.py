"""Oat-Zero (Liu et al. 2025, "Understanding R1-Zero-Like Training"): upstream settings, each pinned to a line.

Repos and revisions read:
- sail-sg/understand-r1-zero @ dfca49d (HEAD): examples/qwen2.5-math-7b.sh, examples/qwen2.5-math-1.5b.sh (the
  "Qwen-Math template" blocks: 7B lines 69-116, 1.5B lines 68-114), train_zero_math.py, understand_r1_zero/math_grader.py,
  evaluate_model.py, README.md.
- sail-sg/oat @ db03da9: the commit whose oat/__about__.py first says 0.1.3.post1, the version README.md:105 of
  understand-r1-zero@dfca49d pins (oat-llm==0.1.3.post1, vllm 0.8.4). Every oat line cited was checked against oat
  HEAD c1a074c: same values and behaviour, but the line numbers there differ.
  The paper-era pin was oat-llm==0.0.9 (tag v0.0.9 = 59eb01b; README from bc2eb73 to bb6d9c0). Where that version
  differs, the note says so (see loss_agg).
- microsoft/DeepSpeed @ 38327e0 (mirror HEAD, 0.16.5-dev; oat pins deepspeed==0.16.8, pyproject.toml:28 of oat@db03da9;
  fused_adam.py has not changed since c8d3f5e, 2023-05).
- huggingface/transformers v4.51.3 (oat pins transformers==4.51.3, pyproject.toml:49 of oat@db03da9); read from the
  PyPI wheel transformers-4.51.3-py3-none-any.whl, so the ref is the release tag, not a commit.
Values are given in our flag semantics (train_zero.py --help); conversions are in the notes.
"""

U = "sail-sg/understand-r1-zero@dfca49d"
O = "sail-sg/oat@db03da9"
DS = "microsoft/DeepSpeed@38327e0"
TF = "huggingface/transformers@v4.51.3"
S7 = f"{U} examples/qwen2.5-math-7b.sh"
S15 = f"{U} examples/qwen2.5-math-1.5b.sh"

_COMMON = {  # identical in both launch scripts' Qwen-Math blocks, or oat/train_zero_math code shared by both
    "template": ("qwen_math", f"{U} train_zero_math.py:47",
                 "the system-prompt line of apply_qwen_math_template; our reward.TEMPLATES['qwen_math'] has the same text"),
    "reward": ("correct", f"{U} understand_r1_zero/math_grader.py:1019",
               "boxed_reward_fn: 1.0 if correct, else 0.0 (:1023); no box gives 0.0 (:1009); no format reward"),
    "extraction": ("boxed", f"{U} understand_r1_zero/math_grader.py:984",
                   "extract_answer takes the last \\boxed (last_boxed_only_string :889; falls back to \\fbox :892); "
                   "remove_boxed (:917) needs a literal \\boxed{ prefix, so \\boxed 5 and \\fbox{..} give no answer (reward 0)"),
    "grader_timeout": (1.0, f"{U} train_zero_math.py:109",
                       "1 s per response in a Pool(2) (:92); a timeout scores 0.0 (:112-113); inside, is_latex_equal has its own 1 s alarm (math_grader.py:603)"),
    "stop": ((), f"{U} train_zero_math.py:164",
             "qwen_math/no templates: stop=None and stop_token_ids=None (:164-167): EOS only, no extra stop strings"),
    "truncated": ("zero_reward", f"{U} train_zero_math.py:252",
                  "finish_reason=='length' (:205) sets the reward to 0; the response stays in the loss "
                  "(loss_mask True, :263, since ignore_no_eos defaults False, oat ppo.py:75-78)"),
    "algo": ("drgrpo", f"{U} train_zero_math.py:300",
             "advantage = r - group mean, no std division (only critic_type grpo divides, :301-307)"),
    "clip_eps": (0.2, f"{O} oat/algorithms/ppo.py:88",
                 "cliprange default 0.2, not set by the scripts; clamp(ratio, 1-c, 1+c) at :524-526"),
    "clip_eps_high": (0.0, f"{O} oat/algorithms/ppo.py:525",
                      "symmetric clip: the same cliprange on both sides (our 0 = same as clip_eps)"),
    "entropy_coef": (0.0, f"{O} oat/algorithms/ppo.py:557",
                     "entropy only computed under no_grad for logging (:557-560); no entropy term in the loss"),
    "lr_schedule": ("constant", f"{O} oat/learners/base.py:156",
                    "get_scheduler(args.lr_scheduler, ...) with lr_scheduler constant from the script (see lr_schedule source per run)"),
    "warmup_ratio": (0.0, f"{TF} src/transformers/optimization.py:566",
                     "oat passes num_warmup_steps = ceil(max_steps*lr_warmup_ratio) (base.py:159; lr_warmup_ratio default 0.03, "
                     "args.py:224) but HF get_scheduler returns the plain constant schedule for 'constant' before warmup is read (:566-567)"),
    "adam_betas": ((0.9, 0.95), f"{O} oat/args.py:207",
                   "adam_beta_1 0.9 (:207), adam_beta_2 0.95 (:208); passed as betas at learners/base.py:142"),
    "adam_eps": (1e-8, f"{DS} deepspeed/ops/adam/fused_adam.py:81",
                 "oat creates DeepSpeed FusedAdam (AdamW mode, :82) without eps (oat utils/deepspeed.py:235-237, learners/base.py:139-144), so the default 1e-8 applies"),
    "weight_decay": (0.0, f"{O} oat/args.py:209", "l2 default 0.0, passed as weight_decay (learners/base.py:143)"),
    "max_grad_norm": (1.0, f"{O} oat/args.py:206", "max_norm default 1.0 -> DeepSpeed gradient_clipping (utils/deepspeed.py:106)"),
    "loss_agg": ("seq_mean_token_sum_norm", f"{U} train_zero_math.py:288",
                 "= our 'algo' under drgrpo: per-response masked_sum / generate_max_length (3000), then mean over the "
                 "micro-batch (oat ppo.py:539-540) and DeepSpeed averaging over 16 grad-accum steps x 8 ranks = 128 responses. "
                 "VERSION NOTE: oat-llm 0.0.9 (paper-era pin, v0.0.9=59eb01b ppo.py:232) used constant_normalizer=1 (plain token sum); "
                 "oat 7619b79 (2025-03-23) and understand-r1-zero 14046dc (2025-03-24) switched to generate_max_length"),
    "logprob_temperature": ("sampling", f"{O} oat/algorithms/ppo.py:512",
                            "logits /= args.temperature for the new log-probs (:512), the old ones (:413) and the reference (:431); "
                            "old log-probs are recomputed by the learner, not taken from vLLM (:386-419)"),
    "shuffle_minibatches": (True, f"{O} oat/algorithms/ppo.py:464",
                            "np.random.permutation of each rank's local buffer (128 responses) before each PPO epoch; "
                            "groups stay whole for the advantage, which is computed before the shuffle (:455-458)"),
    "kl_coef": (0.0, f"{S7}:83", "--beta 0 (1.5B: examples/qwen2.5-math-1.5b.sh:82); kl_penalty_coef (reward KL) defaults 0 (oat ppo.py:60); no reference model is loaded (oat learners/rl.py:45)"),
    "gamma": (1.0, f"{O} oat/algorithms/ppo.py:100", "default; used only by critic_type ppo (GAE), not by drgrpo"),
}


def _run(script, lines, model, data, verifier):
    d = dict(_COMMON)
    d.update({
        "model": (model, f"{script}:{lines['pretrain']}", "--pretrain"),
        "train_data": (data, f"{script}:{lines['prompt_data']}",
                       "--prompt_data ./datasets/train/<set>, --train_split train (next line), input_key problem, output_key answer; "
                       "all rows (--max-train 9999999)"),
        "prompts_per_step": (128, f"{script}:{lines['rollout_batch_size']}",
                             "--rollout_batch_size 128 prompts (16 per device x 8 GPUs, next line); learn() runs after every such batch "
                             "(update_interval = 128 // (8*16) = 1, oat learners/base.py:199-201)"),
        "group_size": (8, f"{script}:{lines['num_samples']}", "--num_samples $N_SAMPLE, N_SAMPLE=8 (line 16)"),
        "updates_per_batch": (8, f"{script}:{lines['train_batch_size']}",
                              "--train_batch_size 128 responses per optimiser step; 128 prompts x 8 = 1024 responses / 128 = 8 steps, "
                              "one PPO epoch (--num_ppo_epochs 1, line " + str(lines['num_ppo_epochs']) + "); grad_acc = 128/1/8 = 16 (oat utils/deepspeed.py:227-229)"),
        "micro_batch_size": (1, f"{script}:{lines['train_batch_size_per_device']}",
                             "--train_batch_size_per_device 1 response per forward/backward"),
        "max_new_tokens": (3000, f"{script}:{lines['generate_max_length']}", "--generate_max_length 3000 (also Dr. GRPO's normaliser)"),
        "temperature": (1.0, f"{script}:{lines['temperature']}", "--temperature 1"),
        "top_p": (1.0, f"{script}:{lines['top_p']}", "--top_p 1 (top_k default -1, oat args.py:155)"),
        "lr": (1e-6, f"{script}:{lines['learning_rate']}", "--learning_rate 0.000001"),
        "lr_schedule": ("constant", f"{script}:{lines['lr_scheduler']}", "--lr_scheduler constant (oat default would be cosine_with_min_lr, args.py:221-223)"),
        "kl_coef": (0.0, f"{script}:{lines['beta']}", "--beta 0; kl_penalty_coef (reward KL) defaults 0 (oat ppo.py:60); no reference model is loaded (oat learners/rl.py:45)"),
        "grader": verifier,
        "eval_every": (16, f"{script}:{lines['eval_steps']}", "--eval_steps 16 (in-training eval, greedy, 3000 tokens, next lines)"),
        "eval_data": ("oat", f"{script}:{lines['eval_data']}",
                      "--eval_data ./datasets/evaluation_suite: all five benchmarks (aime, amc, math, minerva, olympiad_bench) = our 'oat' group, full sets"),
    })
    return d


_L7 = dict(critic_type=70, learning_rate=80, lr_scheduler=81, num_ppo_epochs=82, beta=83, pretrain=86, prompt_data=91,
           num_samples=98, temperature=99, top_p=100, generate_max_length=101, train_batch_size=103,
           train_batch_size_per_device=104, rollout_batch_size=105, eval_steps=109, eval_data=112)
_L15 = dict(critic_type=69, learning_rate=79, lr_scheduler=80, num_ppo_epochs=81, beta=82, pretrain=85, prompt_data=89,
            num_samples=96, temperature=97, top_p=98, generate_max_length=99, train_batch_size=101,
            train_batch_size_per_device=102, rollout_batch_size=103, eval_steps=107, eval_data=110)

SOURCES = {
    "oat_zero_7b": _run(
        S7, _L7, "Qwen/Qwen2.5-Math-7B", "math_lvl3to5_8k (MATH level 3-5, train split)",
        ("oat math_grader, fast=False (mathd | sympy | math_verify)", f"{S7}:88",
         "--verifier_version math_verify -> fast=False (train_zero_math.py:89) -> grade(): Hendrycks mathd string match, "
         "else PRM800K sympy check, else is_latex_equal with math-verify (math_grader.py:990-1003). Neither of our "
         "graders (zero_rl, math_verify) is this; added to the 7B script in b6c927e (2025-03-25)")),
    "oat_zero_1.5b": _run(
        S15, _L15, "Qwen/Qwen2.5-Math-1.5B", "math_12k (MATH 12k, train split)",
        ("oat math_grader, fast=True (mathd | sympy)", f"{U} train_zero_math.py:145",
         "the 1.5B script sets no --verifier_version, so the default 'fast' applies -> fast=True (:89): mathd string "
         "match or sympy check only, no math-verify (math_grader.py:993-1003)")),
}
for _name, _s in (("oat_zero_7b", S7), ("oat_zero_1.5b", S15)):
    SOURCES[_name]["algo"] = ("drgrpo", f"{_s}:{(_L7 if _name == 'oat_zero_7b' else _L15)['critic_type']}",
                              "--critic_type drgrpo; advantage r - group mean without std (train_zero_math.py:294-308)")

SOURCES["oat_zero_protocol"] = {
    "template": _COMMON["template"],
    "extraction": _COMMON["extraction"],
    "grader": ("oat math_grader (train: fast per --verifier_version, default fast; eval: fast=False)", f"{U} evaluate_model.py:199",
               "evaluation always calls the reward fn with fast=False (mathd | sympy | math-verify); training: 7B script "
               "math_verify (fast=False), 1.5B default fast (train_zero_math.py:145). No equivalent among our graders"),
    "grader_timeout": _COMMON["grader_timeout"],
    "reward": _COMMON["reward"],
    "stop": _COMMON["stop"],
    "algo": ("drgrpo", f"{S7}:70", "--critic_type drgrpo (oat args.py:103 default is also drgrpo)"),
    "loss_agg": ("algo", _COMMON["loss_agg"][1], "our 'algo' for drgrpo = seq_mean_token_sum_norm; " + _COMMON["loss_agg"][2]),
    "kl_estimator": ("k3", f"{O} oat/algorithms/ppo.py:549", "expm1(log_ratio) - log_ratio, ref minus new (:548); only when beta > 0 (:543), and the runs use beta 0"),
    "kl_in": ("loss", f"{O} oat/algorithms/ppo.py:555", "reg_loss = beta * aggregated k3 added to the loss (:552-555); inactive at beta 0"),
    "kl_clamp": (0.0, f"{O} oat/algorithms/ppo.py:548",
                 "no clamp of the k3 estimate; the log-ratio is clamped to [-40, 40] before k3 (our kl_clamp has no equivalent); inactive at beta 0"),
    "logprob_temperature": _COMMON["logprob_temperature"],
    "shuffle_minibatches": _COMMON["shuffle_minibatches"],
    "truncated": _COMMON["truncated"],
    "eval.benchmarks": ("oat", f"{U} evaluate_model.py:72",
                        "tasks aime, amc, math, minerva, olympiad_bench from ./datasets/evaluation_suite (:74); score = mean reward per task (:220)"),
    "eval.n": (1, f"{U} evaluate_model.py:79", "n_samples 1"),
    "eval.temperature": (0.0, f"{U} evaluate_model.py:75", "greedy"),
    "eval.top_p": (1.0, f"{U} evaluate_model.py:76", "top_p 1"),
    "eval.max_new_tokens": (3000, f"{U} evaluate_model.py:77", "max_tokens 3000; max_model_len 4096 (:78); bf16 vLLM (:97)"),
    "eval.minerva_gold": ("alternatives", f"{U} understand_r1_zero/math_grader.py:1016",
                          "a list gold is correct if any entry matches (:1014-1017); minerva's answer column is a Sequence "
                          "(datasets/evaluation_suite/minerva/dataset_info.json); olympiad_bench's is a Sequence too"),
}

NOT_FOUND = {
    "oat_zero_7b": {
        "steps": "No line fixes the paper's run length. The script's horizon is --num_prompt_epoch 20 (examples/qwen2.5-math-7b.sh:96) "
                 "with early stop only at max_queries = max_train = 9999999 (oat args.py:285-287, learners/base.py:404), i.e. "
                 "20 x floor(N/128) rollout batches (DistributedSampler drop_last, oat utils/deepspeed.py:281); N for "
                 "math_lvl3to5_8k is not readable here (the arrow file is absent from the mirror). README.md:90 gives only "
                 "'27 hours on 8x A100'; the released checkpoint's step is stated nowhere in the repo.",
    },
    "oat_zero_1.5b": {
        "steps": "As for 7B: horizon --num_prompt_epoch 20 (examples/qwen2.5-math-1.5b.sh:94) over math_12k "
                 "(~20 x 12000/128 = 1,875 rollout batches if N = 12,000); no line gives the released checkpoint's step or the "
                 "1.5B wall time.",
    },
    "oat_zero_protocol": {
        "eval.truncated": "not a field of ours: evaluate_model.py does not check finish_reason (lines 194-204), so a cut response "
                          "is graded as it stands (no zero reward at eval).",
    },
}
