"""The learn phase's model FLOPs utilisation (metrics.jsonl's mfu), counted only when a peak is known: on an NVIDIA
GPU listed in PEAK_BF16_TFLOPS, or with --peak-tflops. The default CPU run never imports this module.

    mfu = learn_flops(model, policy, reference, critic, device, cfg.peak_tflops)   # None: no known peak
    mfu.take()                                   # before the learn phase: forget the no-grad passes so far
    row["mfu"] = mfu.utilisation(seconds, d)     # after it
"""

from __future__ import annotations

import torch

from distributed import Dist, all_reduce

# Dense bf16 peak TFLOP/s per GPU (NVIDIA's datasheets, without sparsity), matched against the device name in order
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200", 989.4), ("H100", 989.4), ("GH200", 989.4),
                    ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0))


def peak_tflops(device: torch.device, given: float = 0.0) -> float | None:
    """The device's peak (dense bf16) TFLOP/s for the mfu column: `given` when > 0 (--peak-tflops), else the
    PEAK_BF16_TFLOPS entry whose name occurs in the CUDA device's name; None on CPU or for a GPU not listed."""
    if given > 0:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


class LearnFlops:
    """Model FLOPs of the passes a module runs (nanoGPT's estimate_mfu, PaLM's model FLOPs; not recomputation).

    A forward over a sequence of T tokens, S of them scored (their logits computed), costs
    2 * body_params * T + 2 * V * H * S + 4 * layers * H * T^2: every parameter a token passes through once
    (decoder layers and norms; the embedding lookup is free), the output projection for the scored tokens only
    (TokenLogProbs projects no prompt token), and attention's QK^T and AV (nanoGPT's 12 L H T per token for forward
    and backward, ignoring the causal mask). A pass with gradients (forward and backward) counts 3x, a no-grad pass
    1x. Gradient checkpointing's recomputed forwards are not counted, so this is MFU, not hardware FLOPs.

    watch(module) hooks a TokenLogProbs or ValueModel (called as module(input_ids, attention_mask, score_mask));
    take() returns the FLOPs counted since the last take (this rank) and resets the count.
    """

    def __init__(self, lm, peak: float | None = None):
        self.peak = peak  # the device's dense bf16 TFLOP/s (utilisation)
        config = lm.config
        embeddings = lm.get_input_embeddings().weight
        output = lm.get_output_embeddings().weight
        total = sum(p.numel() for p in lm.parameters())  # the global count (an FSDP2 DTensor's numel is global)
        tied = output is embeddings or bool(getattr(config, "tie_word_embeddings", False))
        self.body_params = total - embeddings.numel() - (0 if tied else output.numel())
        self.output_params = output.numel()  # V * H
        self.layers, self.hidden = config.num_hidden_layers, config.hidden_size
        self.pending: list[torch.Tensor] = []  # each forward's FLOPs, on its device, summed by take()

    def forward_flops(self, lengths: torch.Tensor, scored: torch.Tensor | float) -> torch.Tensor:
        """FLOPs of one forward over sequences of `lengths` tokens (real, unpadded) with `scored` projected tokens, a
        0-d float64 tensor on the lengths' device (no host sync in the training loop's forwards)."""
        lengths = lengths.double()
        return (2 * self.body_params * lengths.sum() + 2 * self.output_params * scored
                + 4 * self.layers * self.hidden * (lengths**2).sum())

    def watch(self, module: torch.nn.Module, projects: bool = True) -> None:
        """Count every forward of `module` from here on; projects: whether it computes the output projection for the
        score_mask tokens (TokenLogProbs) or not (ValueModel)."""

        def count(_, args, kwargs):
            inputs = [*args, *kwargs.values()]
            attention_mask, score_mask = inputs[1], inputs[2] if len(inputs) > 2 else None
            scored = score_mask.bool().sum() if projects and score_mask is not None else 0.0
            flops = self.forward_flops(attention_mask.sum(dim=1), scored)
            self.pending.append(3 * flops if torch.is_grad_enabled() else flops)

        module.register_forward_pre_hook(count, with_kwargs=True)

    def take(self) -> float:
        """The FLOPs counted since the last take, as a float (one host sync), and a fresh count."""
        pending, self.pending = self.pending, []
        return float(sum(flops.item() for flops in pending)) if pending else 0.0


    def utilisation(self, seconds: float, d: Dist) -> float:
        """metrics.jsonl's mfu: the FLOPs counted since the last take (all ranks) over world_size x seconds x the
        per-device peak, in [0, 1]; resets the count. Collective."""
        flops = all_reduce(torch.tensor([self.take()], dtype=torch.float64)).item()
        return flops / (d.world_size * max(seconds, 1e-9) * self.peak * 1e12)


def learn_flops(model, policy, reference, critic, device: torch.device, given: float = 0.0) -> LearnFlops | None:
    """A LearnFlops watching the trainer's passes (policy and reference: TokenLogProbs; critic: a ValueModel, which
    projects nothing), with the device's peak (peak_tflops); None when the peak is unknown (then no mfu)."""
    peak = peak_tflops(device, given)
    if peak is None:
        return None
    flops = LearnFlops(model, peak)
    for module, projects in ((policy, True), (reference, True), (critic, False)):
        if module is not None:
            flops.watch(module, projects)
    return flops
