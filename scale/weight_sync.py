"""The vLLM side of VLLMEngine.sync_weights: tensors packed into byte buckets, and the worker extension that loads them.

scale.vllm_engine.VLLMEngine packs the trainer's parameters with `pack_bucket` (vLLM's RPC serialiser sends bytes,
not tensors) and sends one `collective_rpc` per bucket; `VLLMWeightReceiver` is mixed into vLLM's worker
(`worker_extension_cls="scale.weight_sync.VLLMWeightReceiver"`) and runs in the worker process. This file
imports vllm only inside the receiver's methods, so `import weight_sync` works without vllm.
"""

from __future__ import annotations

import math

import torch


def pack_bucket(bucket: list[tuple[str, torch.Tensor]]) -> tuple[bytes, list[tuple[str, str, list[int], int]]]:
    """Flatten (name, CPU tensor) pairs into one byte string and (name, dtype name, shape, byte offset) records.

    Each tensor starts at a multiple of 16 bytes, so unpack_bucket can view the buffer without copying.
    """
    parts, layout, offset = [], [], 0
    for name, tensor in bucket:
        data = tensor.contiguous().reshape(-1).view(torch.uint8)
        layout.append((name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape), offset))
        pad = -data.numel() % 16
        parts += [data, torch.zeros(pad, dtype=torch.uint8)] if pad else [data]
        offset += data.numel() + pad
    return torch.cat(parts).numpy().tobytes(), layout


def unpack_bucket(data: bytes, layout: list[tuple[str, str, list[int], int]]) -> list[tuple[str, torch.Tensor]]:
    """Inverse of pack_bucket: (name, tensor) pairs, views of one writable buffer."""
    flat = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    pairs = []
    for name, dtype_name, shape, offset in layout:
        dtype = getattr(torch, dtype_name)
        pairs.append((name, flat[offset : offset + math.prod(shape) * dtype.itemsize].view(dtype).view(shape)))
    return pairs


class VLLMWeightReceiver:
    """Mixed into vLLM's worker (worker_extension_cls): the receiving end of VLLMEngine.sync_weights.

    One session per sync: start (vLLM's layerwise reload moves the layers to the meta device and defers
    their processing), load buckets (model.load_weights maps checkpoint names, e.g. q/k/v into qkv_proj,
    and processes each layer once all its tensors arrived), finish (processes the rest, returns the names
    of parameters that received nothing). Runs in the worker process; `self` is the vLLM worker.
    """

    def zero_rl_start_weight_update(self) -> None:
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        model = self.model_runner.get_model()
        self.zero_rl_loaded = set()
        with set_current_vllm_config(self.vllm_config):
            initialize_layerwise_reload(model)

    def zero_rl_load_weights(self, data: bytes, layout: list) -> None:
        from vllm.config import set_current_vllm_config

        with set_current_vllm_config(self.vllm_config):
            self.zero_rl_loaded |= self.model_runner.get_model().load_weights(unpack_bucket(data, layout))

    def zero_rl_finish_weight_update(self) -> list[str]:
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        model = self.model_runner.get_model()
        with set_current_vllm_config(self.vllm_config):
            finalize_layerwise_reload(model, self.vllm_config.model_config)
            # A tied lm_head received nothing (its weight is the embedding's), so the reload left its derived
            # state alone: on CPU a oneDNN handle packed from the old embedding. Re-run its processing.
            parameters = dict(model.named_parameters(remove_duplicate=False))
            loaded_ids = {id(parameters[name]) for name in self.zero_rl_loaded if name in parameters}
            aliases = {name.rpartition(".")[0] for name, parameter in parameters.items()
                       if name not in self.zero_rl_loaded and id(parameter) in loaded_ids}
            for module_name in sorted(aliases):
                module = model.get_submodule(module_name)
                if getattr(module, "quant_method", None) is not None:
                    module.quant_method.process_weights_after_loading(module)
        return sorted({name for name, _ in model.named_parameters()} - self.zero_rl_loaded)
