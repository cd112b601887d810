"""rollout.py with a tiny random model: grouping, masks, EOS and stop-string handling, seeding."""

import torch

from losses import TokenLogProbs
from model import resolve_model
from rollout import HFEngine, Sample, SamplingParams, eos_token_ids
from learn import pairs
from learn import collate


def test_resolve_model_passes_hub_ids_and_dirs_through(tmp_path):
    assert resolve_model("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B"
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_embedded_model_is_converted_once(smollm_dir):
    from pathlib import Path

    assert (Path(smollm_dir) / "config.json").exists() and (Path(smollm_dir) / "model.safetensors").exists()
    assert resolve_model("smollm2-135m") == smollm_dir  # second call: cached


def test_generate_groups_and_records(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer, batch_size=4)
    prompts = ["What is 1 + 1?", "A much longer prompt, to force left padding: what is 17 * 4?"]
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=12, seed=0)
    groups = engine.generate(prompts, params)
    assert [len(g) for g in groups] == [3, 3]
    eos = set(eos_token_ids(tokenizer))
    for prompt, group in zip(prompts, groups):
        for s in group:
            assert s.prompt_ids == tokenizer(prompt, add_special_tokens=False).input_ids  # no pads kept
            assert 1 <= len(s.response_ids) <= 12
            assert s.finish_reason in ("stop", "length")
            if s.finish_reason == "stop":
                assert s.response_ids[-1] in eos and not eos & set(s.response_ids[:-1])
            else:
                assert len(s.response_ids) == 12 and not eos & set(s.response_ids)
            assert s.text == tokenizer.decode(s.response_ids, skip_special_tokens=True)


def test_generate_is_seeded(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer)
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=123)
    a = engine.generate(["What is 2 + 2?"], params)
    b = engine.generate(["What is 2 + 2?"], params)
    params.seed = 124
    c = engine.generate(["What is 2 + 2?"], params)
    ids = lambda groups: [s.response_ids for g in groups for s in g]
    assert ids(a) == ids(b) and ids(a) != ids(c)


def test_greedy_is_deterministic(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer)
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=8)
    group = engine.generate(["What is 3 + 3?"], params)[0]
    assert group[0].response_ids == group[1].response_ids


def test_static_cache_decodes_the_same_greedy_tokens(tiny_model, tokenizer):
    """HFEngine(static_cache=True): prompts padded to 64-token buckets, a batch of 6 filled to 8, a preallocated
    cache; greedy tokens, stop handling and the records equal the dynamic path's (on CPU nothing is compiled)."""
    prompts = ["What is 1 + 1?", "A much longer prompt, to force left padding: what is 17 * 4?"]
    params = SamplingParams(n=3, temperature=0.0, max_new_tokens=10, stop_token_ids=[7])
    dynamic = HFEngine(tiny_model, tokenizer, batch_size=8).generate(prompts, params)
    static = HFEngine(tiny_model, tokenizer, batch_size=8, static_cache=True).generate(prompts, params)
    assert [[(s.prompt_ids, s.response_ids, s.text, s.finish_reason) for s in g] for g in static] == \
        [[(s.prompt_ids, s.response_ids, s.text, s.finish_reason) for s in g] for g in dynamic]


def test_static_cache_samples_from_the_policy(tiny_model, tokenizer):
    """Sampling on the static path: seeded (the same call draws the same tokens), distinct draws within a group,
    and a group larger than batch_size split over calls (4 + 1, the 1 filled up to no more than itself)."""
    engine = HFEngine(tiny_model, tokenizer, batch_size=4, static_cache=True)
    params = SamplingParams(n=5, temperature=1.0, max_new_tokens=6, seed=11)
    groups = engine.generate(["What is 2 + 2?"], params)
    assert [len(g) for g in groups] == [5] and groups == engine.generate(["What is 2 + 2?"], params)
    assert len({tuple(s.response_ids) for s in groups[0]}) > 1  # a random 49k-token policy: distinct draws


def test_finish_cuts_at_eos_and_keeps_it(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    body = tokenizer("The answer is 4.", add_special_tokens=False).input_ids
    s = engine._finish([5], body + [eos, eos, eos], SamplingParams(max_new_tokens=20))
    assert s.response_ids == body + [eos] and s.finish_reason == "stop" and s.text == "The answer is 4."
    s = engine._finish([5], body, SamplingParams(max_new_tokens=len(body)))
    assert s.response_ids == body and s.finish_reason == "length"


def test_finish_cuts_after_stop_string(tiny_model, tokenizer):
    engine = HFEngine(tiny_model, tokenizer)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    head = tokenizer(" 2+2 </think> <answer> 4 </answer>", add_special_tokens=False).input_ids
    tail = tokenizer(" and more", add_special_tokens=False).input_ids
    s = engine._finish([5], head + tail + [eos], SamplingParams(max_new_tokens=40, stop=["</answer>"]))
    assert s.finish_reason == "stop" and s.text.endswith("</answer>") and s.response_ids == head


def test_stop_token_ids_end_a_response_as_eos_does(tiny_model, tokenizer):
    """--stop-token-ids (the Zoo's per-model stops): generation ends at the first such token, which is kept."""
    engine = HFEngine(tiny_model, tokenizer)
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=12)
    full = engine.generate(["What is 5 + 5?"], greedy)[0][0].response_ids
    firsts = [i for i, t in enumerate(full) if t not in full[:i] and t not in engine.eos_ids]  # first occurrences
    stop_id = full[firsts[-1]]  # the latest one: the longest response that must still be cut there
    greedy.stop_token_ids = [stop_id]
    cut = engine.generate(["What is 5 + 5?"], greedy)[0][0]
    assert cut.response_ids == full[: full.index(stop_id) + 1] and cut.finish_reason == "stop"
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    s = engine._finish([5], [7, 8, 9, eos], SamplingParams(stop_token_ids=[8]))
    assert s.response_ids == [7, 8] and s.finish_reason == "stop"


def test_response_mask_ends_at_and_includes_eos(tokenizer):
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    samples = [Sample([10, 11, 12], [20, 21, eos], "", "stop"), Sample([10], [30, 31], "", "length")]
    ids, attn, rmask = collate(pairs(samples), pad_id=eos, device="cpu")
    assert ids.tolist() == [[10, 11, 12, 20, 21, eos], [10, 30, 31, eos, eos, eos]]
    assert attn.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    # position t scores token t+1: row 0 scores tokens 3..5 (20, 21, EOS), row 1 tokens 1..2
    assert rmask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 0, 0, 0]]


def test_token_logprobs_match_model_logits(tiny_model, tokenizer):
    samples = [Sample([10, 11, 12], [20, 21, 2], "", "stop"), Sample([10], [30, 31], "", "length")]
    ids, attn, rmask = collate(pairs(samples), pad_id=2, device="cpu")
    logp, entropy = TokenLogProbs(tiny_model, temperature=0.7, chunk_size=3)(ids, attn, rmask)
    logits = tiny_model(input_ids=ids, attention_mask=attn).logits[:, :-1] / 0.7
    ref = torch.log_softmax(logits.float(), -1).gather(2, ids[:, 1:, None]).squeeze(2)
    torch.testing.assert_close(logp, ref * rmask, atol=1e-5, rtol=1e-5)
    assert (entropy[rmask == 0] == 0).all() and (entropy[rmask == 1] > 0).all()


def test_engine_drops_hub_sampling_defaults(tiny_model, tokenizer):
    # e.g. Qwen2.5 ships top_k=20 and repetition_penalty=1.05: sampling would then not follow the policy
    tiny_model.generation_config.repetition_penalty = 1.05
    tiny_model.generation_config.top_k = 20
    HFEngine(tiny_model, tokenizer)
    assert tiny_model.generation_config.repetition_penalty in (None, 1.0) and tiny_model.generation_config.top_k != 20


def test_weight_buckets_round_trip_every_dtype_and_shape():
    from scale.weight_sync import pack_bucket, unpack_bucket

    torch.manual_seed(0)
    bucket = [("a.weight", torch.randn(3, 5)), ("b.bias", torch.randn(7).bfloat16()), ("c", torch.arange(3)),
              ("d.weight", torch.randn(2, 3, 4)[:, 1]),  # not contiguous
              ("e", torch.tensor(1.5, dtype=torch.float16))]
    data, layout = pack_bucket(bucket)
    assert isinstance(data, bytes) and all(offset % 16 == 0 for *_, offset in layout)
    unpacked = unpack_bucket(data, layout)
    assert [name for name, _ in unpacked] == [name for name, _ in bucket]
    for (_, got), (_, want) in zip(unpacked, bucket):
        assert got.dtype == want.dtype and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    unpacked[0][1].add_(1)  # writable views (vLLM's loaders copy out of them)


def test_one_vllm_construction_for_training_and_evaluation(monkeypatch):
    """scale.vllm_engine.vllm_engine: on CPU the KV cache in GiB, eager mode, no GPU share (vLLM refuses a share of 0); on a
    GPU the settings' share, else the caller's default, and CUDA graphs."""
    from scale import vllm_engine as rollout_vllm
    from config import VLLMSettings

    calls = []
    monkeypatch.setattr(rollout_vllm, "VLLMEngine", lambda path, **kwargs: calls.append(kwargs))
    settings = VLLMSettings(vllm_kv_cache_gb=2.0, vllm_cpu_bind="0-1")
    rollout_vllm.vllm_engine("m", settings, torch.device("cpu"), torch.float32, 3, 512, gpu_share=0.0)
    assert calls[-1] == {"dtype": "float32", "seed": 3, "max_model_len": 512, "kv_cache_gb": 2.0, "enforce_eager": True,
                         "cpu_threads_bind": "0-1"}
    rollout_vllm.vllm_engine("m", settings, torch.device("cuda", 0), torch.bfloat16, 0, 512, gpu_share=0.9,
                             tensor_parallel_size=2)
    assert calls[-1]["gpu_memory_utilization"] == 0.9 and calls[-1]["kv_cache_gb"] is None
    assert calls[-1]["enforce_eager"] is False and calls[-1]["dtype"] == "bfloat16" and calls[-1]["tensor_parallel_size"] == 2
    rollout_vllm.vllm_engine("m", VLLMSettings(vllm_gpu_memory_utilization=0.4),
                             torch.device("cuda", 0), torch.bfloat16, 0, 512, gpu_share=0.9)
    assert calls[-1]["gpu_memory_utilization"] == 0.4
