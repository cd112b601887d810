"""The built-in procedural sets (the embedded default's data: no files, no network). Imported through `data`."""

from __future__ import annotations

import random

from data.records import Problem


def arithmetic_problems(n: int, seed: int = 0) -> list[Problem]:
    """Easy integer arithmetic, sized for a 135M instruct model.

    A uniform mix of a + b and a - b (both operands two-digit, a >= b so answers are non-negative) and
    a * b with one two-digit and one single-digit factor (2..9), in random order.

    Args:
        n: number of problems (>= 0).
        seed: seeds random.Random; the same (n, seed) always gives the same list, and the first k
            problems of a longer draw equal the draw of k.
    Returns:
        n Problems like Problem("What is 17 * 4?", "68", source="arithmetic", meta={"expression": "17 * 4"}).
    Raises:
        ValueError: if n is negative.
    """
    if n < 0:
        raise ValueError(f"arithmetic_problems: n must be >= 0, got {n}")
    rng = random.Random(seed)
    problems = []
    for _ in range(n):
        operator = rng.choice("+-*")
        if operator == "*":
            a, b = rng.randint(10, 99), rng.randint(2, 9)
            if rng.random() < 0.5:
                a, b = b, a
            value = a * b
        else:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            if operator == "-":
                a, b = max(a, b), min(a, b)
            value = a + b if operator == "+" else a - b
        expression = f"{a} {operator} {b}"
        problems.append(Problem(f"What is {expression}?", str(value), "arithmetic", None,
                                {"expression": expression}))
    return problems


def add_one_problems(n: int, seed: int = 0) -> list[Problem]:
    """Counting on by one: "What is 57 + 1?" (a uniform in 10..99; 19 + 1, 99 + 1 and the like carry).

    The embedded default's task (docs/results.md): the Q4-quantised 135M model gets 4 of 64
    held-out problems right before training (greedy, `chat_oneshot` template; it writes `2 + 71 = \\boxed{15}`),
    so the reward has something to reinforce, and with the default 1 / 0 reward all ten seeds 0-9 find the rule
    within 15 steps (68.8-100 %; with the SimpleRL reward two of three seeds did). Adding 1..5 instead stayed at
    0 correct for 9 steps: the model never sampled a right sum.
    Same contract as arithmetic_problems (prefix-stable draws).

    Returns: n Problems like Problem("What is 57 + 1?", "58", source="add_one", meta={"expression": "57 + 1"}).
    Raises: ValueError if n is negative.
    """
    if n < 0:
        raise ValueError(f"add_one_problems: n must be >= 0, got {n}")
    rng = random.Random(seed)
    problems = []
    for _ in range(n):
        a = rng.randint(10, 99)
        problems.append(Problem(f"What is {a} + 1?", str(a + 1), "add_one", None, {"expression": f"{a} + 1"}))
    return problems


PROCEDURAL_SETS = {"arithmetic": arithmetic_problems, "add_one": add_one_problems}  # name -> (n, seed) -> problems


