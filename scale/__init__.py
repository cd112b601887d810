"""Scale: what a run needs only on GPUs or many ranks, loaded only when a flag (or the device) asks for it.

The default run (one process or DDP, the transformers engine on the live model, fp32 on a CPU) needs none of it:

    vllm_engine.py  the vLLM engine (--rollout-engine vllm, evaluate.py --engine vllm): sampler log-probs, the
                    in-place weight sync and its probe
    scale/weight_sync.py  the vLLM worker's side of that sync (byte buckets, layerwise reload)
    fsdp.py         FSDP2 sharding (--shard fsdp) and its sharded checkpoints (torch.distributed.checkpoint,
                    loaded without executing anything)
    mfu.py          the learn phase's model FLOPs and MFU (on a GPU with a known peak, or --peak-tflops)
"""
