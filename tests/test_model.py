"""model.py at its seams: bf16 compute against fp32, gradient checkpointing, flags that fail early, engine copies."""

import pytest
import torch

from losses import TokenLogProbs
from model import ValueModel, distribute, enable_gradient_checkpointing, load_model
from rollout import HFEngine

BF16_TOLERANCE = 1e-2  # nats: max |logp_bf16 - logp_fp32| per token on the tiny Qwen2 below (measured 1.3e-3)


def tiny_qwen2(seed=0):
    """A 2-layer Qwen2 (the Qwen2.5-Math architecture) with random weights, fp32."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=False)
    return Qwen2ForCausalLM(config).float()


def batch(vocab=512, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (3, 12), generator=g)
    attn = torch.ones_like(ids)
    attn[0, :3] = 0  # left padding, as the engines produce
    mask = torch.zeros(3, 11)
    mask[:, 5:] = 1
    return ids, attn, mask


def test_bfloat16_log_probs_stay_close_to_float32():
    lm = tiny_qwen2()
    ids, attn, mask = batch()
    fp32, _ = TokenLogProbs(lm)(ids, attn, mask)
    bf16, entropy = TokenLogProbs(lm, compute_dtype=torch.bfloat16)(ids, attn, mask)
    assert bf16.dtype == torch.float32 and entropy.dtype == torch.float32  # the kernel's output stays fp32
    diff = (bf16 - fp32)[mask.bool()].abs().max().item()
    assert 0 < diff < BF16_TOLERANCE  # bf16 really ran (not identical), and stays within the stated tolerance
    assert all(p.dtype == torch.float32 for p in lm.parameters())  # master weights untouched


def test_bfloat16_gradients_reach_the_fp32_weights():
    lm = tiny_qwen2()
    ids, attn, mask = batch()
    logp, _ = TokenLogProbs(lm, compute_dtype=torch.bfloat16)(ids, attn, mask)
    logp.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in lm.parameters())
    critic = ValueModel(tiny_qwen2(), compute_dtype=torch.bfloat16)
    values = critic(ids, attn)
    assert values.dtype == torch.float32 and values.shape == (3, 11)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        lm = tiny_qwen2()
        lm.train()
        if checkpointing:
            enable_gradient_checkpointing(lm)
            on = lm.is_activation_checkpointing if hasattr(type(lm), "is_activation_checkpointing") else \
                lm.is_gradient_checkpointing  # renamed in transformers 5.24
            assert on
        logp, entropy = TokenLogProbs(lm)(*batch())
        (logp.sum() + 0.1 * entropy.sum()).backward()
        grads.append({n: p.grad.clone() for n, p in lm.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_flags_that_cannot_work_fail_before_training(tiny_model_dir):
    pytest.importorskip("transformers")
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="flash-attn"):
            load_model(tiny_model_dir, attn_implementation="flash_attention_2")
    eager, _ = load_model(tiny_model_dir, attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="--shard 'zero3'"):
        distribute(TokenLogProbs(eager), "zero3")
    with pytest.raises(ValueError, match="--ref-offload needs --shard fsdp"):
        distribute(TokenLogProbs(eager), "ddp", offload=True)


def test_an_engine_copy_follows_the_trainer_after_sync(tiny_model_dir):
    trainer, tokenizer = load_model(tiny_model_dir)
    copy, _ = load_model(tiny_model_dir)
    engine = HFEngine(copy, tokenizer, own_copy=True)
    with torch.no_grad():
        for p in trainer.parameters():
            p.add_(0.01)
    assert engine.sync_weights(trainer) > 0
    for (name, a), (_, b) in zip(trainer.named_parameters(), copy.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    with pytest.raises(RuntimeError, match="weight sync: the engine's copy has no parameter 'weight'"):
        engine.sync_weights(torch.nn.Linear(2, 2))  # not the engine's model
    assert HFEngine(trainer, tokenizer).sync_weights(trainer) == 0.0  # the live model: nothing to copy
