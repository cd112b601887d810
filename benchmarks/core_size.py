"""How big the core is: the project modules a run loads, and the files one learning step walks through.

    python benchmarks/core_size.py                       # a short default run (1 step, 8-problem eval)
    python benchmarks/core_size.py --trace-step          # also: one learning step under sys.setprofile
    python benchmarks/core_size.py -- --algo ppo         # flags after -- go to train_zero.py

Modules: every module in sys.modules at the end of the run (its eval, checkpoint and figure included) whose file
lies in this repository (tests and benchmarks excepted), with its line count (wc -l).

The step trace (--trace-step) runs 3 steps under --reward simplerl (so step 2 learns: loss_tokens > 0) and records,
from the start of step 2 to the start of step 3, every call into a project function. It prints the functions and
files, and two walks between files: the files of the functions in the order they are first called (how a reader
follows the step: each function read once), and the file of the innermost project frame after every call and return
(as executed: a loop over responses repeats its switches). A switch is a change of file; a return is a switch back
into a file the walk has already left.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def project_file(filename: str | None) -> str | None:
    """The repository-relative path of a project source file, else None (libraries, tests, benchmarks)."""
    if not filename or not Path(filename).is_absolute():
        return None
    path = Path(filename).resolve()
    if ROOT not in path.parents or ".venv" in path.parts or path.parts[len(ROOT.parts)] in ("tests", "benchmarks"):
        return None
    return str(path.relative_to(ROOT))


def loaded_modules() -> dict[str, int]:
    """{repository-relative file: lines} of the project modules now in sys.modules."""
    out = {}
    for module in list(sys.modules.values()):
        name = project_file(getattr(module, "__file__", None))
        if name and name.endswith(".py"):
            out[name] = len((ROOT / name).read_text().splitlines())
    return dict(sorted(out.items()))


class StepTrace:
    """sys.setprofile hook for the second step: install() wraps train_zero.problems_for_step (each step's first
    stage), which turns the hook on at its 2nd call and off at its 3rd; only project frames are recorded."""

    def __init__(self):
        self.starts, self.calls, self.walk, self.stack = 0, [], [], []

    def install(self, train_zero) -> None:
        first_stage = train_zero.problems_for_step

        def problems_for_step(*args, **kwargs):
            self.starts += 1
            sys.setprofile(self if self.starts == 2 else None)
            return first_stage(*args, **kwargs)

        train_zero.problems_for_step = problems_for_step

    def __call__(self, frame, event, arg):
        if event not in ("call", "return"):
            return
        name = project_file(frame.f_code.co_filename)
        if name is None:
            return
        if event == "call":
            self.calls.append((name, frame.f_code.co_name))
            self.stack.append(name)
        elif self.stack:
            self.stack.pop()
        if self.stack and (not self.walk or self.walk[-1] != self.stack[-1]):
            self.walk.append(self.stack[-1])

    def report(self) -> str:
        files = Counter(name for name, _ in self.calls)
        functions = sorted(set(self.calls))
        left, returns = set(), 0
        for previous, current in zip(self.walk, self.walk[1:]):
            left.add(previous)
            returns += current in left
        first = [name for name, _ in dict.fromkeys(self.calls)]  # each function's file, in first-call order
        read = [name for i, name in enumerate(first) if i == 0 or first[i - 1] != name]
        read_returns = sum(name in read[:i] for i, name in enumerate(read))
        lines = [f"one learning step: {len(functions)} project functions in {len(files)} files",
                 f"  read in first-call order: {len(read) - 1} switches between files, {read_returns} of them back to "
                 f"a file already left: " + " -> ".join(read),
                 f"  executed: {len(self.walk) - 1} switches, {returns} back to a file already left (loops repeat them)",
                 "  calls per file: " + ", ".join(f"{name} {count}" for name, count in files.most_common())]
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace-step", action="store_true", help="also trace one learning step (3 steps)")
    parser.add_argument("rest", nargs="*", help="flags for train_zero.py (after --)")
    args = parser.parse_args()
    import train_zero
    from rundir import parse

    with tempfile.TemporaryDirectory() as tmp:
        steps = ["--steps", "3", "--reward", "simplerl"] if args.trace_step else ["--steps", "1"]
        flags = [*steps, "--eval-every", steps[1], "--save-every", steps[1], "--eval-limit", "8", "--out-dir",
                 f"{tmp}/run", *args.rest]
        cfg = parse(train_zero.Config, flags, "train_zero.py")
        trace = StepTrace() if args.trace_step else None
        if trace:
            trace.install(train_zero)
        train_zero.main(cfg)
        sys.setprofile(None)
    modules = loaded_modules()
    print(f"project modules loaded by the run: {len(modules)}, {sum(modules.values())} lines")
    for name, lines in modules.items():
        print(f"  {lines:5d}  {name}")
    if trace:
        print(trace.report())


if __name__ == "__main__":
    main()
