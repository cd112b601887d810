"""SimpleRL-Zoo (hkust-nlp/simpleRL-reason, branch v1, commit cf1c7858bfc145a27aa733e75d930d34f0d318a6) settings,
each with its source line, converted to train_zero.py / evaluate.py field semantics.

Format: SOURCES[run][field] = (value in our units, "owner/repo@commit path:line", note).
Runs: "zoo_common" (shared by the six recipes), one dict per recipe (only what is model-specific), and
"simplerl_zoo_protocol" (protocols.PROTOCOLS["simplerl_zoo"] fields and "eval."-prefixed evaluation fields).
Paths without a repo prefix are in hkust-nlp/simpleRL-reason@cf1c785.
"""

R = "hkust-nlp/simpleRL-reason@cf1c785"
SH = f"{R} train_grpo_math_tune_ray.sh"
YAML = f"{R} verl/trainer/config/ppo_trainer.yaml"
README = f"{R} README.md"
CORE = f"{R} verl/trainer/ppo/core_algos.py"
ACTOR = f"{R} verl/workers/actor/dp_actor.py"
WORKERS = f"{R} verl/workers/fsdp_workers.py"
TRAINER = f"{R} verl/trainer/ppo/ray_trainer.py"
REWARD = f"{R} verl/utils/reward_score/hf_math_verify.py"
VLLM = f"{R} verl/workers/rollout/vllm_rollout/vllm_rollout.py"
EVAL = f"{R} examples/simplelr_math_eval"

SOURCES = {
    "zoo_common": {
        "algo": ("grpo", f"{SH}:177",
                 "algorithm.adv_estimator=grpo; advantage = (r - group mean) / (unbiased group std + 1e-6) "
                 "(core_algos.py:114,146-151), no critic"),
        "reward": ("mix", f"{REWARD}:157",
                   "REWORD_FUNCTION_TYPE default mix: 1 if correct else 0, no box needed (lines 193-200); same "
                   "scores as our 'correct', but read through the harness extraction below"),
        "extraction": ("qwen_harness", f"{REWARD}:110",
                       "Qwen2.5-Math harness extract_answer(text, 'math') on the text after the first "
                       "'<|im_start|>assistant' (line 104) cut at the first </s>/<|im_end|>/<|endoftext|> (105-108); "
                       "the decoded text is prompt+response (verl/trainer/main_ppo.py:80-81), so under abel the "
                       "prompt stays in front; gold and answer wrapped in \\boxed{} before verify (178-186)"),
        "grader": ("math_verify", f"{REWARD}:121",
                   "math-verify parse of both sides, then verify (lines 121-123); an exception scores wrong"),
        "grader_timeout": (10.0, f"{REWARD}:129",
                           "timeout_seconds=10 waiting on a 16-worker process pool (lines 83, 145); a timeout scores wrong (147-149)"),
        "prompts_per_step": (1024, f"{README}:156",
                             "--train_batch_size 1024 in the README command (for 7B; line 166: same for other models); "
                             "the script's own default is 256 (train_grpo_math_tune_ray.sh:23). Follow the README"),
        "group_size": (8, f"{SH}:37", "ROLLOUT_N=8 -> actor_rollout_ref.rollout.n (line 203); README:156 also 8"),
        "updates_per_batch": (4, f"{SH}:28",
                              "PPO_MINI_BATCH_SIZE=256 prompts, multiplied by n in fsdp_workers.py:122 -> 2048 "
                              "samples; 1024x8 / 2048 = 4 optimiser steps; ppo_epochs 1 (ppo_trainer.yaml:35) and "
                              "update_policy has no epoch loop (dp_actor.py:216-219). With the script's default "
                              "batch 256 it would be 1"),
        "micro_batch_size": (2, f"{SH}:30",
                             "PPO_MICRO_BATCH_SIZE=2 passed as ppo_micro_batch_size_per_gpu (line 188): per GPU"),
        "max_new_tokens": (8192, f"{README}:156",
                           "--max_response_length 8192 (script default 3072 at train_grpo_math_tune_ray.sh:26); "
                           "README:166 says the same command for other models; DeepSeek-Math differs (see its dict)"),
        "temperature": (1.0, f"{SH}:35", "TEMPERATURE=1.0 -> rollout.temperature (line 198)"),
        "top_p": (1.0, f"{YAML}:67", "rollout.top_p 1, not set by the script; top_k -1 (line 66)"),
        "clip_eps": (0.2, f"{SH}:31", "CLIP_RATIO=0.2 -> actor.clip_ratio (line 192)"),
        "clip_eps_high": (0.0, f"{CORE}:189", "one symmetric clamp(1-c, 1+c): no separate upper range, no dual clip"),
        "entropy_coef": (0.001, f"{SH}:33",
                         "ENTROPY_COEFFIENT=0.001 (README:156 also 0.001); entropy is masked-mean per micro-batch "
                         "(dp_actor.py:253) subtracted at dp_actor.py:256"),
        "kl_coef": (1e-4, f"{README}:154",
                    "README: kl_loss_coef=1e-4 for 0.5B-14B (command at line 156); the script default is 0.001 "
                    "(train_grpo_math_tune_ray.sh:32, used per README for >14B). Follow 1e-4 for all six"),
        "kl_estimator": ("k3", f"{SH}:34", "KL_LOSS_TYPE=low_var_kl = k3 (core_algos.py:263-266)"),
        "kl_in": ("loss", f"{SH}:189",
                  "use_kl_loss=True: masked-mean KL added to the actor loss (dp_actor.py:258-266); no reward KL "
                  "then (ray_trainer.py:917-923)"),
        "kl_clamp": (10.0, f"{CORE}:267", "low_var_kl clamped to [-10, 10]"),
        "lr": (5e-7, f"{SH}:27", "LEARNING_RATE=5e-7 -> actor.optim.lr (line 185)"),
        "lr_schedule": ("constant", f"{WORKERS}:279",
                        "the actor always gets a constant-with-warmup schedule (the yaml's warmup_style is not read)"),
        "warmup_ratio": (0.0, f"{YAML}:40", "lr_warmup_steps_ratio 0. (fsdp_workers.py:274-275)"),
        "adam_betas": ((0.9, 0.999), f"{WORKERS}:270", "betas default (0.9, 0.999); the yaml sets none"),
        "adam_eps": (1e-8, "pytorch/pytorch@002d2f0 torch/optim/adamw.py:19",
                     "AdamW built without eps (fsdp_workers.py:268-271) -> torch default 1e-8 (stored torch "
                     "version; README.md:113 pins torch 2.4.0, same default)"),
        "weight_decay": (0.01, f"{WORKERS}:271", "weight_decay default 1e-2; the yaml sets none"),
        "max_grad_norm": (1.0, f"{YAML}:29", "actor.grad_clip 1.0, applied at dp_actor.py:147"),
        "steps": (100, f"{README}:140",
                  "README: 7B and 14B trained ~100 steps (15 h on 2x8 H100). The script runs "
                  "len(dataloader) x TOTAL_EPOCHS=20 (train_grpo_math_tune_ray.sh:39, ray_trainer.py:495; "
                  "drop_last, ray_trainer.py:471), i.e. ~8 batches/epoch x 20 for ~8K problems, and stops one "
                  "short (global_steps starts at 1, ray_trainer.py:804,968). Follow the README's ~100"),
        "loss_agg": ("token_mean", f"{ACTOR}:274",
                     "policy/entropy/KL each masked-mean over the micro-batch's response tokens (core_algos.py:191, "
                     "dp_actor.py:253,264), then divided by the number of micro-batches (ppo_mini/micro, "
                     "dp_actor.py:226): a mean of per-micro-batch token means, not one token mean per step"),
        "logprob_temperature": ("sampling", f"{ACTOR}:100",
                                "logits divided by rollout.temperature (also dp_actor.py:136; temperature from "
                                "fsdp_workers.py:496,529) for old, new and ref log-probs; T=1 here anyway"),
        "shuffle_minibatches": (False, f"{ACTOR}:216",
                                "mini-batches cut in order; actor.shuffle False (ppo_trainer.yaml:36) "
                                "unused. The batch is reordered by sequence-length balancing across ranks first "
                                "(ray_trainer.py:879, 758-769), deterministic, not a shuffle"),
        "stop": (("</s>", "<|im_end|>", "<|endoftext|>"), f"{REWARD}:105",
                 "the reward cuts the decoded text at these (lines 105-108); generation stops at EOS and the "
                 "per-model stop_token_ids (each recipe's dict). Ours stops generating at these strings instead, "
                 "so nothing after them is trained; for Qwen2.5 they are EOS tokens anyway"),
        "truncated": ("keep", f"{SH}:45",
                      "REMOVE_CLIP=False -> trainer.remove_clip; only when True are truncated responses masked out "
                      "(ray_trainer.py:855-867); reward computed as usual"),
        "eval_every": (5, f"{SH}:44",
                       "TEST_FREQ=5: in-training validation on $DATASET/test.parquet (line 179), greedy "
                       "(ray_trainer.py:525), same reward function"),
        "save_every": (5, f"{README}:156", "--save_freq 5 in the README command (script default 20 at line 43)"),
    },
    "zoo_qwen2.5_0.5b": {
        "stop_token_ids": ((14582, 16141, 31198), f"{VLLM}:140",
                           "rollout stop_token_ids (comment: Question, Answer, Problem) for a path holding "
                           "'0.5b' (vLLM keeps the stop token in the response); EOS still stops generation"),
        "max_new_tokens": (8192, f"{README}:166", "same command as README:156 for other models"),
    },
    "zoo_qwen2.5_1.5b": {
        "stop_token_ids": ((14582, 16141, 31198), f"{VLLM}:138",
                           "rollout stop_token_ids (comment: Question, Answer, Problem) for '1.5b'"),
        "max_new_tokens": (8192, f"{README}:166", "same command as README:156"),
    },
    "zoo_qwen2.5_7b": {
        "template": ("qwen_boxed", f"{README}:177",
                     "the README's eval example uses --template qwen-boxed (for Qwen-2.5-32B); training prompts are "
                     "pre-formatted in the HF parquet (README:125-131, simplelr_qwen_*), used verbatim "
                     "(verl/utils/dataset/rl_dataset.py:144)"),
        "train_data": ("zoo-hard", f"{README}:131",
                       "README downloads simplelr_qwen_level3to5 (MATH levels 3-5); script default DATASET_NAME="
                       "simplelr_math_35 (train_grpo_math_tune_ray.sh:40). Prompts over 1024 characters dropped "
                       "(rl_dataset.py:117-119, max_prompt_length 1024 at train_grpo_math_tune_ray.sh:25)"),
        "stop_token_ids": ((151645, 151643, 872, 77091, 1474, 71703, 151644, 8948), f"{VLLM}:133",
                           "rollout stop_token_ids for a path holding 'qwen2.5' and '7b' (the line names none; "
                           "the eval's qwen stop strings at math_eval.py:270 are assistant/user/_end/_start); a "
                           "path also holding 'math' adds 73594 (line 135), not this base model"),
        "max_new_tokens": (8192, f"{README}:156", "--max_response_length 8192"),
        "steps": (100, f"{README}:140", "stated for the 7B/14B runs"),
    },
    "zoo_llama3.1_8b": {
        "stop_token_ids": ((14924, 16533), f"{VLLM}:128",
                           "rollout stop_token_ids (comment: Question, Answer) for a path holding 'llama'"),
        "max_new_tokens": (8192, f"{README}:166", "same command as README:156"),
    },
    "zoo_mistral_7b": {
        "stop_token_ids": ((22478, 24994, 26307, 9977, 933, 2820), f"{VLLM}:126",
                           "rollout stop_token_ids (comment: Question, Answer, \\nStep) for 'mistral' + "
                           "'7b-v0.1'; these stops fit the abel layout"),
        "max_new_tokens": (8192, f"{README}:166", "same command as README:156"),
    },
    "zoo_deepseek_math_7b": {
        "stop_token_ids": ((3631, 81038, 5726, 77398, 6713), f"{VLLM}:130",
                           "rollout stop_token_ids (comment: user, assistant, system) for 'deepseek-math': "
                           "chat-markup words, as for Qwen2.5-7B's qwen prompt, not abel's Question/Answer"),
        "max_new_tokens": (3072, f"{SH}:26",
                           "MAX_RESPONSE_LENGTH default 3072; 8192 cannot run since vllm_rollout.py:90 asserts "
                           "max_position_embeddings >= 1024 prompt + response (DeepSeek-Math-7B's 4096 context is "
                           "from its HF config, not this repo)"),
    },
    "simplerl_zoo_protocol": {
        "template": ("qwen_boxed", f"{README}:177",
                     "eval example template; the Zoo picks the prompt per base model (data formats abel/qwen, "
                     "README:125)"),
        "extraction": ("qwen_harness", f"{REWARD}:110", "see zoo_common"),
        "grader": ("math_verify", f"{REWARD}:121", "see zoo_common"),
        "grader_timeout": (10.0, f"{REWARD}:129", "see zoo_common"),
        "reward": ("mix", f"{REWARD}:157",
                   "independent: 1 / 0.5 / -0.5 / FORMAT_PENALTY_VALUE (default -1, line 158), lines 201-209"),
        "stop": (("</s>", "<|im_end|>", "<|endoftext|>"), f"{REWARD}:105",
                 "the reward cuts the text at these; training generation itself stops only at EOS plus the "
                 "per-model stop_token_ids (vllm_rollout.py:122-142), which include these strings' tokens only "
                 "for Qwen2.5-7B; the eval stops at them (math_eval.py:253)"),
        "algo": ("grpo", f"{SH}:177", "see zoo_common"),
        "loss_agg": ("token_mean", f"{ACTOR}:274", "per micro-batch token mean / grad-accum steps; see zoo_common"),
        "kl_estimator": ("k3", f"{SH}:34", "low_var_kl"),
        "kl_in": ("loss", f"{SH}:189", "use_kl_loss=True"),
        "kl_clamp": (10.0, f"{CORE}:267", "k3 clamped to [-10, 10]"),
        "logprob_temperature": ("sampling", f"{ACTOR}:100", "logits divided by the sampling temperature"),
        "shuffle_minibatches": (False, f"{ACTOR}:216", "in-order split"),
        "truncated": ("keep", f"{SH}:45", "REMOVE_CLIP=False"),
        "eval.benchmarks": ("zoo", f"{README}:183",
                            "aime24,amc23,math500,olympiadbench,gsm8k,minerva_math (+ AIME24 avg@32, README:74); "
                            "eval_math_nodes.sh:30 default adds gaokao2023en, college_math"),
        "eval.n": (1, f"{README}:184", "--n_sampling 1; AIME24 avg@32 samples 32 with the same settings (README:74)"),
        "eval.temperature": (1.0, f"{README}:180",
                             "README:74: trained (zero-RL) models T=1.0, top-p 0.95; base models greedy. "
                             "eval_math_nodes.sh:27 default 0.0"),
        "eval.top_p": (0.95, f"{README}:181",
                       "eval_math_nodes.sh:29 default 1; forced to 1 when T=0 (examples/simplelr_math_eval/"
                       "math_eval.py:55-57)"),
        "eval.max_new_tokens": (16000, f"{README}:182", "--max_tokens 16000 (also eval_math_nodes.sh:28 default)"),
        "eval.minerva_gold": ("answer", f"{EVAL}/parser.py:586",
                              "gold for math/minerva_math/math500 is the harness extraction of the solution (line 588)"),
        "eval.stop": (("</s>", "<|im_end|>", "<|endoftext|>"), f"{EVAL}/math_eval.py:253",
                      "plus per prompt type: qwen* adds assistant, user, _end, _start (269-270); abel adds "
                      "'Question:', 'Answer:' (271-272); stop_token_ids for qwen2 [151645, 151643] and Mistral-7B "
                      "[22478, 24994, 26307, 9977] (289-295)"),
        "eval.grader": ("qwen_harness math_equal", f"{EVAL}/evaluate.py:65",
                        "evaluation grades with the harness's math_equal, 3 s timeout per sample, not math-verify"),
    },
}

NOT_FOUND = {
    "zoo_common": {
        "template": "Not in code: prompts are pre-formatted inside the HF dataset hkust-nlp/SimpleRL-Zoo-Data "
                    "(README.md:125-131) and used verbatim (rl_dataset.py:144). Per model see each recipe.",
        "train_data": "Not in code (dataset chosen by --dataset_name, default simplelr_math_35 at "
                      "train_grpo_math_tune_ray.sh:40). Paper §2.2, quoted in hkust-nlp/simpleRL-reason issue #49: "
                      "Easy for Llama-3.1-8B, Mistral-7B-v0.1, DeepSeek-Math-7B; Medium for Qwen2.5-0.5B; Hard for "
                      "Qwen2.5-1.5B/7B (and 14B/32B, Math-7B, Mistral-24B).",
    },
    "zoo_qwen2.5_0.5b": {
        "template": "abel: not in the repo; issue #61 (maintainer) names simplelr_abel_level1to4 for 0.5B.",
        "train_data": "zoo-medium: issue #61 (simplelr_abel_level1to4) and the paper quote in issue #49.",
        "steps": "README.md:140 states ~100 steps only for 7B/14B; for others only TOTAL_EPOCHS=20 "
                 "(train_grpo_math_tune_ray.sh:39) applies, i.e. len(dataloader) x 20 - 1.",
    },
    "zoo_qwen2.5_1.5b": {
        "template": "abel: not in the repo; issue #61 names simplelr_abel_level3to5 for 1.5B (issue #67 points there).",
        "train_data": "zoo-hard: issue #61 (simplelr_abel_level3to5) and the paper quote in issue #49.",
        "steps": "as for 0.5B: README gives ~100 only for 7B/14B.",
    },
    "zoo_qwen2.5_7b": {},
    "zoo_llama3.1_8b": {
        "template": "abel: not in the repo; issue #71 (maintainer) points to the simplelr_abel_* data; the rollout "
                    "stops (vllm_rollout.py:128: Question, Answer) fit abel.",
        "train_data": "zoo-easy: paper quote in issue #49 (issue #71 lists all three abel splits without choosing).",
        "steps": "README gives ~100 for 7B/14B; 8B not named.",
    },
    "zoo_mistral_7b": {
        "template": "Not stated anywhere found. Rollout stops at vllm_rollout.py:126 (Question, Answer, \\nStep) and "
                    "eval stop ids at math_eval.py:293 fit abel; our abel is consistent but inferred.",
        "train_data": "zoo-easy: paper quote in issue #49.",
    },
    "zoo_deepseek_math_7b": {
        "template": "Not stated anywhere found. Code evidence points AWAY from abel: its rollout stop ids "
                    "(vllm_rollout.py:130) are the chat-markup words user/assistant/system, the same kind as the "
                    "qwen-prompt Qwen2.5-7B (line 133), while every abel model stops on Question/Answer "
                    "(lines 126, 128, 138, 140). Likely the qwen (qwen_boxed) prompt; unconfirmed.",
        "train_data": "zoo-easy: paper quote in issue #49.",
    },
    "simplerl_zoo_protocol": {},
}
