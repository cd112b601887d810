"""Shared fixtures: the embedded SmolLM2 tokenizer/checkpoint and a tiny random Llama built in code."""

import pytest
import torch


@pytest.fixture(scope="session")
def smollm_dir():
    """The embedded SmolLM2-135M-Instruct, converted from its GGUF file once (cached)."""
    from model import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def tokenizer(smollm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm_dir)
    tok.padding_side = "left"
    return tok


def make_tiny_model(vocab_size: int, seed: int = 0):
    """A 2-layer Llama with hidden size 32 and random weights, fp32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return LlamaForCausalLM(config).float()


@pytest.fixture
def tiny_model(tokenizer):
    return make_tiny_model(len(tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A tiny random model saved as an HF directory with the SmolLM2 tokenizer (for --model)."""
    path = tmp_path_factory.mktemp("tiny_model")
    make_tiny_model(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def parity_reward(monkeypatch):
    """A reward with variance on a random model: +1 for even-indexed responses, -0.5 for odd ones."""
    import train_zero
    from parity_run import parity_rewards

    monkeypatch.setattr(train_zero, "compute_rewards", parity_rewards)
