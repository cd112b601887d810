"""A random-weight HF checkpoint built from a model's config: the real architecture and sizes, no download.

    python benchmarks/random_model.py --model qwen2.5-math-1.5b --tokenizer smollm2-135m --out /tmp/qwen-1.5b-random
    torchrun --nproc_per_node 1 train_zero.py --model /tmp/qwen-1.5b-random --shard fsdp --dtype bfloat16 ...

What it is for: timing and memory runs of the training loop at a real model's size on a machine that
cannot download the weights (benchmarks/gpu_check.sh), and tests of the sharding code on a real
architecture. The model learns nothing useful (its samples are noise), but every tensor has the real
shape, so memory and speed are the real model's.

--model: a config shipped under benchmarks/configs/ (qwen2.5-math-1.5b, qwen2.5-math-7b), an HF directory
or hub id. --tokenizer: an HF directory or smollm2-135m (the embedded model); it is saved beside the
weights. Its ids must be below the config's vocab_size (ValueError otherwise); sampled ids the tokenizer
does not know decode to nothing. --set KEY=VALUE overrides config fields (JSON values), e.g.
--set num_hidden_layers=2 for a small model of the same family.
Weights are drawn by transformers' own initialiser (normal, std = config.initializer_range), seeded by
--seed, built on --device, saved as safetensors in --dtype.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory_plan import load_config, parse_overrides  # noqa: E402 (benchmarks/ is on sys.path when run as a script)


def build(model: str, tokenizer: str, out: str, overrides: dict | None = None, dtype: str = "bfloat16",
          device: str = "cpu", seed: int = 0) -> str:
    """Write a random-weight checkpoint of `model`'s config with `tokenizer` to `out`; returns `out`.

    Raises ValueError when the tokenizer's ids do not fit the config's vocabulary, or an override names a
    field the config does not have.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model import resolve_model

    config = load_config(model, overrides)
    tok = AutoTokenizer.from_pretrained(resolve_model(tokenizer))
    if len(tok) > config.vocab_size:
        raise ValueError(f"--tokenizer {tokenizer} has {len(tok)} ids, more than {model}'s vocab_size {config.vocab_size}")
    torch.manual_seed(seed)
    with torch.device(device):
        lm = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    # The tokenizer's special tokens, so generation stops and pads with ids this tokenizer knows.
    lm.config.bos_token_id, lm.config.eos_token_id = tok.bos_token_id, tok.eos_token_id
    lm.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    lm.generation_config.bos_token_id, lm.generation_config.eos_token_id = lm.config.bos_token_id, lm.config.eos_token_id
    lm.generation_config.pad_token_id = lm.config.pad_token_id
    lm.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-math-1.5b")
    p.add_argument("--tokenizer", default="smollm2-135m")
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (JSON value)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    p.add_argument("--device", default="cpu", help="where the weights are drawn (cuda is much faster for 1B+)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = build(args.model, args.tokenizer, args.out, parse_overrides(args.set), args.dtype, args.device, args.seed)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
