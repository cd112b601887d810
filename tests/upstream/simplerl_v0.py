"""SimpleRL-Zero-7B (hkust-nlp/simpleRL-reason branch v0, commit 2702a87c68c107d0f329b701b034c229bf62a130):
the settings that upstream uses, converted to this codebase's flag names and units.

Sources (all line numbers are those of the file at the commit named):
- S  = hkust-nlp/simpleRL-reason@2702a87 train/examples/script/train_ppo_qwen_base_math_lv35_new.sh (the 4-node run)
- CLI = hkust-nlp/simpleRL-reason@2702a87 train/openrlhf/cli/train_ppo_ray_box.py (the entry point S runs; argparse
  defaults). It builds ActorModelRayActorBOX -> ActorPPOTrainerBOX -> RemoteExperienceMakerBOX.
- EM = train/openrlhf/trainer/ppo_utils/experience_maker.py; TR = train/openrlhf/trainer/ppo_trainer_prm800k_box.py
- DeepSpeed pinned by train/requirements.txt: deepspeed==0.15.0 (microsoft/DeepSpeed@55b4cae = tag v0.15.0).
- The training data file (train/data/math_level3to5_data_processed_with_qwen_prompt.json) is absent from the mirror
  (its blob a51b46c is not stored); its prompt text is read from a third-party copy at the same path
  (ruth22soft/adaptive-kl-grpo-thesis@94e99ef), not hash-verified against upstream's blob.

Arithmetic used below (dataset N = 8,523 per docs/papers.md §4; the README says "8K"):
- updates_per_batch = rollout_batch_size 1024 * n_samples_per_prompt 8 / train_batch_size 128 * max_epochs 1 = 64.
- Rollout batches per episode: DistributedSampler(drop_last) over 8 actor ranks gives ceil((N-8)/8) = 1,065 prompts
  per rank, DataLoader(batch 128, drop_last) -> 8 per episode (same 8 for any N in 8,200..9,223); 20 episodes = 160.
- LR-schedule horizon: num_update_steps_per_episodes = N*8//128*1 = 532 optimiser steps; max_steps = 20*532 =
  10,640 optimiser steps = 166.25 rollout batches of 64; warmup ceil(0.03*10640) = 320 optimiser steps = 5 rollout
  batches. A full 20-episode run takes 160*64 = 10,240 optimiser steps, so the cosine never reaches its floor
  (ends near 0.103 x lr); the published run (README: 120 steps) stops at 7,680.
"""

_R = "hkust-nlp/simpleRL-reason@2702a87"
_S = f"{_R} train/examples/script/train_ppo_qwen_base_math_lv35_new.sh"
_CLI = f"{_R} train/openrlhf/cli/train_ppo_ray_box.py"
_EM = f"{_R} train/openrlhf/trainer/ppo_utils/experience_maker.py"
_TR = f"{_R} train/openrlhf/trainer/ppo_trainer_prm800k_box.py"
_ACT = f"{_R} train/openrlhf/trainer/ray/ppo_actor.py"
_UT = f"{_R} train/openrlhf/models/utils.py"
_LOSS = f"{_R} train/openrlhf/models/loss.py"
_DS = "microsoft/DeepSpeed@55b4cae"
_DATA = "ruth22soft/adaptive-kl-grpo-thesis@94e99ef train/data/math_level3to5_data_processed_with_qwen_prompt.json"

_TEMPLATE = ("qwen_math", f"{_DATA}:3",
             "prompt is pre-built in the data file's 'input' field: Qwen system prompt 'Please reason step by step, and "
             "put your final answer within \\boxed{}.' + user turn with the bare question; ends '<|im_start|>assistant' "
             "WITHOUT the trailing newline our qwen_math has. Used verbatim: S:35-36 (--input_key input), no "
             "--input_template / --apply_chat_template (CLI:341-344 defaults None/False), ppo_actor.py:32-38 returns "
             "data[input_key] unchanged. Third-party copy of the file (upstream blob not in mirror)")
_REWARD = ("simplerl", f"{_EM}:612-618",
           "preprocess_box_response_for_qwen_prompt (called at EM:3758): +1 if harness math_equal(extracted, gold), "
           "else -0.5; then -1 whenever the substring 'boxed' is absent from the response (overrides a correct answer)")
_EXTRACTION = ("harness_if_boxed", f"{_EM}:583",
               "Qwen2.5-Math harness extract_answer(text, 'math') (toolkit parser.py:499-569: Minerva '$. I hope' "
               "form first, then text after the LAST 'boxed', strip_string) on the response from the first "
               "'<|im_start|>assistant' (EM:578) cut at the first stop word (EM:579-582), then -1 whenever the raw "
               "substring 'boxed' is absent (EM:617), overriding even a right answer; an empty extraction is graded "
               "(math_equal('', gold) is False: -0.5). Our harness_if_boxed is exactly this gate over qwen_harness")
_GRADER = ("harness math_equal (no exact flag of ours; nearest zero_rl)", f"{_EM}:531",
           "qwen_math_eval_toolkit.grader.math_equal, run in a child process (EM:551-573)")
_GRADER_TIMEOUT = (10.0, f"{_EM}:551",
                   "qwen_math_equal_subprocess timeout_seconds=10; join(timeout) then terminate -> False -> -0.5 (EM:561-567)")
_STOP = (("</s>", "<|im_end|>", "<|endoftext|>"), f"{_EM}:3895",
         "vLLM stop strings when 'qwen' is in the --pretrain path (it is: S:17), plus stop_token_ids 151645/151643 "
         "(EM:3896); the reward also cuts at these (EM:579)")
_STOP_IDS = ((151645, 151643), f"{_EM}:3896",
             "vLLM stop_token_ids when 'qwen' is in the --pretrain path: Qwen2.5's <|im_end|> and <|endoftext|>")
_TRUNCATED = ("keep", f"{_EM}:3944-3945",
              "a response cut at generate_max_len gets an EOS appended and is scored and trained like any other")
_ALGO = ("ppo", f"{_CLI}:306-312",
         "advantage_estimator default 'gae'; critic = the base model with a new value head (CLI:366-375, "
         "ppo_critic.py:69-84)")
_LOSS_AGG = ("seq_mean_token_mean", f"{_LOSS}:48",
             "masked mean over each response's tokens, then mean over the micro-batch of 2; DeepSpeed divides by the "
             "8 accumulation steps (DeepSpeed@55b4cae deepspeed/runtime/engine.py:1995-1996) and averages over 8 DP "
             "ranks -> equal weight per sequence over the 128-sequence mini-batch")
_KL_EST = ("k1", f"{_UT}:25-36",
           "log_ratio = logp - logp_ref, masked; k3 only with --use_kl_estimator_k3, default False (CLI:292-300), "
           "not set in S")
_KL_IN = ("reward", f"{_UT}:53-67",
          "compute_reward: per-token reward -kl_coef*kl plus the rule reward at the last action token; called at "
          "EM:2973-2980 before GAE")
_KL_CLAMP = (0.0, f"{_UT}:25-36",
             "no clamp of the KL estimate; the only clamp is of the rule reward to reward_clip_range (-10,10) "
             "(CLI:303, utils.py:50-51), a no-op for +1/-0.5/-1")
_LOGPROB_T = ("1", f"{_R} train/openrlhf/models/actor.py:204",
              "log_probs_from_logits on raw logits (utils.py:79-82), no division by the 0.6 sampling temperature; "
              "used for old/new/ref log-probs (EM:3799, launcher.py:101, TR:360)")
_SHUFFLE = (True, f"{_TR}:268-272",
            "ppo_train builds DataLoader(replay_buffer, batch_size=micro 2, shuffle=True, drop_last=True) per rank; "
            "the critic shuffles its own copy independently (ppo_critic.py:22-29)")

SOURCES = {
    "simplerl_zero_7b": {
        "model": ("Qwen/Qwen2.5-Math-7B", f"{_S}:17", "pretrain = Qwen2.5-Math-7B snapshot b101308"),
        "template": _TEMPLATE,
        "reward": _REWARD,
        "extraction": _EXTRACTION,
        "grader": _GRADER,
        "grader_timeout": _GRADER_TIMEOUT,
        "stop": _STOP,
        "stop_token_ids": _STOP_IDS,
        "truncated": _TRUNCATED,
        "algo": _ALGO,
        "prompts_per_step": (1024, f"{_S}:22", "--rollout_batch_size 1024 (global; 128 per actor rank, ppo_actor.py:766-768)"),
        "group_size": (8, f"{_S}:24", "--n_samples_per_prompt 8"),
        "updates_per_batch": (64, f"{_S}:20",
                              "--train_batch_size 128 samples per optimiser step; 1024*8/128 * max_epochs 1 (S:26) = 64; "
                              "gradient accumulation 128/(2*8 ranks)=8 (deepspeed.py:234-239)"),
        "micro_batch_size": (2, f"{_S}:19", "--micro_train_batch_size 2 per GPU"),
        "max_new_tokens": (3000, f"{_S}:29", "--generate_max_len 3000 -> vLLM max_tokens (EM:3892)"),
        "prompt_max_len": (1024, f"{_S}:28", "--prompt_max_len 1024 (prompts truncated to it, EM:3902); no flag of ours"),
        "vllm_max_model_len": (4024, f"{_CLI}:153", "max_len = prompt_max_len + generate_max_len = 1024+3000"),
        "temperature": (0.6, f"{_S}:23", "--temperature 0.6 -> vLLM SamplingParams (EM:3889)"),
        "top_p": (1.0, f"{_CLI}:280", "default, not set in S"),
        "clip_eps": (0.2, f"{_CLI}:273", "--eps_clip default 0.2; symmetric clamp in PolicyLoss (loss.py:46)"),
        "clip_eps_high": (0.0, f"{_LOSS}:46", "symmetric clip (same 0.2 above and below)"),
        "entropy_coef": (0.0, f"{_TR}:380", "actor loss = policy loss + aux_loss*coef only; no entropy term"),
        "value_clip": (0.2, f"{_CLI}:274", "--value_clip default 0.2 (ValueLoss, loss.py:68-77)"),
        "gamma": (1.0, f"{_CLI}:276", "--gamma default 1"),
        "gae_lambda": (0.95, f"{_CLI}:275", "--lambd default 0.95"),
        "whiten_advantages": (True, f"{_TR}:245",
                              "replay_buffer.normalize('advantages'): token-level mean/std over all actor ranks "
                              "(replay_buffer.py:209-238)"),
        "kl_coef": (0.01, f"{_S}:34", "--init_kl_coef 0.01; fixed (kl_target default None, CLI:290; TR:133-136)"),
        "kl_estimator": _KL_EST,
        "kl_in": _KL_IN,
        "kl_clamp": _KL_CLAMP,
        "lr": (5e-7, f"{_S}:32", "--actor_learning_rate 5e-7"),
        "critic_lr": (9e-6, f"{_S}:33", "--critic_learning_rate 9e-6; same cosine/warmup/min 0.1 (ppo_critic.py:101-107)"),
        "lr_schedule": ("cosine", f"{_ACT}:715-721",
                        "HF 'cosine_with_min_lr', stepped per optimiser step by DeepSpeed (engine.py:2162), horizon "
                        "max_steps = 10,640 optimiser steps = 166.25 rollout batches (ppo_actor.py:709-712)"),
        "warmup_ratio": (0.03, f"{_ACT}:718", "num_warmup_steps = ceil(0.03 * max_steps) = 320 optimiser steps = 5 rollout batches"),
        "min_lr_ratio": (0.1, f"{_ACT}:720", "min_lr = actor_learning_rate * 0.1"),
        "adam_betas": ((0.9, 0.95), f"{_CLI}:302", "--adam_betas default (0.9, 0.95), passed at ppo_actor.py:702"),
        "adam_eps": (1e-8, f"{_DS} deepspeed/ops/adam/fused_adam.py:81",
                     "FusedAdam default eps (FusedAdam chosen since S sets no --adam_offload: deepspeed.py:121)"),
        "weight_decay": (0.0, f"{_CLI}:271", "--l2 default 0.0, passed as weight_decay at ppo_actor.py:702"),
        "max_grad_norm": (1.0, f"{_CLI}:270", "--max_norm default 1.0 -> DeepSpeed gradient_clipping (deepspeed_utils.py:53)"),
        "steps": (120, f"{_R} README.md:70",
                  "README: trained 120 steps (rollout batches; a step = one rollout batch, TR:212/259), ~60 enough. "
                  "S itself would run num_episodes 20 (S:27) x 8 rollout batches per episode = 160 (drop_last "
                  "sampler, distributed_sampler.py:93-99; TR:216-227); its LR horizon is 166.25 rollout batches"),
        "loss_agg": _LOSS_AGG,
        "logprob_temperature": _LOGPROB_T,
        "shuffle_minibatches": _SHUFFLE,
        "normalize_reward": ("no-op", f"{_R} train/openrlhf/models/model.py:262-264",
                             "--normalize_reward (S:37) only rescales the critic's values by buffers mean=0/std=1 "
                             "(model.py:231-238) unless the model config holds mean/std; the rule reward is never "
                             "normalised (no reward model in this run)"),
    },
    "simplerl_zero_protocol": {
        "template": _TEMPLATE,
        "extraction": _EXTRACTION,
        "grader": _GRADER,
        "grader_timeout": _GRADER_TIMEOUT,
        "reward": _REWARD,
        "stop": _STOP,
        "algo": _ALGO,
        "loss_agg": _LOSS_AGG,
        "kl_estimator": _KL_EST,
        "kl_in": _KL_IN,
        "kl_clamp": _KL_CLAMP,
        "logprob_temperature": _LOGPROB_T,
        "shuffle_minibatches": _SHUFFLE,
        "truncated": _TRUNCATED,
        "eval.template": ("qwen_math", f"{_R} eval/sh/run.sh:4",
                          "--template qwen25-math-cot = eval/utils.py:141-147 (system prompt form, ends with "
                          "'assistant' + newline: identical to our qwen_math)"),
        "eval.benchmarks": ("simplerl", f"{_R} README.md:30-38",
                            "published table: AIME24, MATH500, AMC23, Minerva, OlympiadBench (our 'simplerl' group); "
                            "eval/sh/eval.sh:11 also runs gsm8k, gaokao2023en, college_math"),
        "eval.n": (1, f"{_R} eval/sh/eval.sh:23", "--n_sampling 1"),
        "eval.temperature": (0.0, f"{_R} eval/sh/eval.sh:22", "--temperature 0 (greedy)"),
        "eval.top_p": (1.0, f"{_R} eval/sh/eval.sh:24", "--top_p 1"),
        "eval.max_new_tokens": (3000, f"{_R} eval/sh/eval.sh:20", "--max_tokens_per_call 3000"),
        "eval.stop": (("</s>", "<|im_end|>", "<|endoftext|>"), f"{_R} eval/math_eval.py:253",
                      "no extra stop for qwen25-math-cot"),
        "eval.extraction": ("qwen_harness", f"{_R} eval/parser.py:499", "harness extract_answer"),
        "eval.minerva_gold": ("answer", f"{_R} eval/parser.py:586-588",
                              "Minerva gold = harness extract_answer of the 'solution' field (single answer)"),
    },
}

NOT_FOUND = {
    "simplerl_zero_7b": {
        "dataset_size": "train/data/math_level3to5_data_processed_with_qwen_prompt.json is not stored in the mirror "
                        "(blob a51b46c absent); README.md:12 says only '8K'. 8,523 comes from our docs/papers.md. "
                        "The 8-rollout-batches-per-episode figure holds for any size from 8,200 to 9,223.",
    },
    "simplerl_zero_protocol": {},
    "simplerl_7b": {
        "rl_stage": "v0 does not publish the SimpleRL (SFT-then-RL) recipe: README.md:100-102 says 'Comming Soon'; "
                    "v0 has only the two from-base scripts (both Qwen2.5-Math-7B base, same settings). Every RL "
                    "hyperparameter of recipes/simplerl_7b.sh's RL stage is therefore an assumption (copied from "
                    "SimpleRL-Zero), not an upstream value.",
        "template": "o1_cot exists only as an eval prompt type (eval/utils.py:165-169); nothing in v0 ties it to "
                    "the SimpleRL RL stage. Note: v0's reward (EM:578) strips the prompt only up to "
                    "'<|im_start|>assistant'; with an o1_cot prompt nothing is stripped, the prompt's own "
                    "'\\boxed{}' makes the -1 gate (EM:617) never fire, and an unboxed answer scores -0.5.",
        "stop": "EM:3895-3896 sets stop strings only when 'qwen' is in the --pretrain path; an SFT checkpoint path "
                "may not contain it. Undetermined.",
    },
}
