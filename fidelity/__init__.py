"""Upstream fidelity: what reproduces one paper's code exactly, loaded only when a flag asks for it.

The core (train_zero.py -> rollout.py -> reward.py -> learn.py -> losses.py) is the algorithm as the papers
describe it. What an upstream's own code adds around it lives here, each module imported by the flag that needs it:

    fidelity/protocols.py    PROTOCOLS: every setting one upstream fixes (--protocol; docs/protocols.md)
    fidelity/published.py    the papers' published tables and their column layouts (evaluate.py --compare, --benchmarks oat,
                    train_zero.py --eval-data oat / simplerl / zoo / all)
    extraction.py   the Qwen-harness, SimpleRL-Zero v0 and strict-r1 answer readings and the Zoo's "independent"
                    reward rule (--extraction qwen_harness | harness_if_boxed | r1_strict, --reward independent)
    math_verify.py  the Zoo's grader: HF math-verify as the Zoo calls it (--grader math_verify; in the grader's workers)
"""
