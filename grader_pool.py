"""The grader's worker pool: grader.equivalence or math-verify, a hard per-sample timeout, never hanging or raising.

    with Grader(timeout=5.0, workers=2, backend="zero_rl") as grader:
        grader.grade_many([(pred, gold), ...]) -> ["correct" | "wrong" | "parse_error" | "timeout", ...]

Two backends (--grader):
- "zero_rl" (default): the layers are grader.py's; this file only runs them with a timeout (the last deviation
  listed there).
- "math_verify": HuggingFace math-verify decides every pair, called as SimpleRL-Zoo's reward calls it
  (fidelity/math_verify.py), in the same killable workers with the same timeout; grader.py's layers are not used.
  Deviations from SimpleRL-Zoo (hkust-nlp/simpleRL-reason v1, verl/utils/reward_score/hf_math_verify.py):
  - Verdicts instead of a bool: a side that parses to nothing (or math-verify raised) is "parse_error", a killed
    worker "timeout"; upstream returns False for all three (every one of them scores as "wrong" here too).
  - Our timeout kills the worker (upstream: a 10 s future.result timeout that leaves the task running in its pool).
"""

import multiprocessing
import time
import warnings
from collections import deque
from multiprocessing.connection import wait as wait_for_connections
from typing import Literal, get_args

from grader import cheap_verdict, equivalence

GraderBackend = Literal["zero_rl", "math_verify"]
BACKENDS = get_args(GraderBackend)


_WORKER_STARTUP_TIMEOUT = 120.0  # seconds for a spawned worker to import its grader (and the parent's __main__)


def _worker_loop(conn, backend: str) -> None:
    """Worker process body: answer (pred, gold) requests with the backend's verdict until None or the pipe closes."""
    if backend == "math_verify":
        from fidelity.math_verify import math_verify_equivalence  # imports math_verify before "ready": start-up
                                                                  # time never counts against a sample
        decide = math_verify_equivalence
    else:
        import latex2sympy2_extended  # noqa: F401
        import sympy  # noqa: F401  (imported before "ready" so start-up time never counts against a sample)

        decide = equivalence
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the parent is gone: nothing left to serve
            return
        if request is None:
            return
        conn.send(decide(*request))


class _Worker:
    """One spawned worker process and its pipe; state "starting" | "idle" | "busy"."""

    def __init__(self, backend: str):
        context = multiprocessing.get_context("spawn")  # safe under torchrun and threads
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=_worker_loop, args=(child_conn, backend), daemon=True,
                                       name="grader-worker")
        self.process.start()
        child_conn.close()
        self.state, self.deadline, self.index = "starting", time.monotonic() + _WORKER_STARTUP_TIMEOUT, -1

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()  # SIGKILL: sympy cannot ignore it, unlike thread or alarm timeouts
        self.process.join(timeout=5)
        self.conn.close()


class Grader:
    """Grades (pred, gold) pairs with a hard per-sample timeout; never hangs or raises.

    Backend "zero_rl": layers 1-3 run in the calling process; pairs they cannot decide go to a pool of `workers`
    persistent worker processes (spawned lazily, one request in flight each). Backend "math_verify": every pair
    goes to the pool, where fidelity.math_verify decides it. A sample that runs longer than `timeout`
    seconds gets its worker KILLED and replaced, and the verdict "timeout"; the other workers go on.
    Not thread-safe: one Grader per thread/rank. Use as a context manager, or call close().
    Source: oat (1 s) / SimpleRL (10 s) grading timeouts; docs/papers.md §2 step 4; math_verify: SimpleRL-Zoo v1
    verl/utils/reward_score/hf_math_verify.py.
    """

    def __init__(self, timeout: float = 5.0, workers: int = 2, backend: GraderBackend = "zero_rl"):
        """Args: timeout, seconds one sample may spend in a worker (start-up not counted); workers, pool size;
        backend, "zero_rl" or "math_verify" (module docstring). Raises ValueError for workers < 1 or another backend."""
        if workers < 1:
            raise ValueError(f"workers={workers}: the grader needs at least 1 worker process")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: the grader backend must be one of {', '.join(BACKENDS)}")
        self.timeout = timeout
        self.workers = workers
        self.backend = backend
        self._workers: list[_Worker] = []

    def grade(self, pred: str | None, gold: str) -> str:
        """Verdict for one answer: "correct" | "wrong" | "parse_error" | "timeout" ("wrong" when pred is None)."""
        return self.grade_many([(pred, gold)])[0]

    def grade_many(self, pairs: list[tuple[str | None, str]]) -> list[str]:
        """Verdicts for (pred, gold) pairs, in order; as grade() for each, with the workers' share (layer 4 for
        zero_rl, every pair for math_verify) spread over the pool."""
        verdicts: list[str | None] = [None] * len(pairs)
        pending = deque()
        cheap = cheap_verdict if self.backend == "zero_rl" else (lambda pred, gold: None)  # math-verify decides all
        for i, (pred, gold) in enumerate(pairs):
            verdicts[i] = "wrong" if pred is None else cheap(pred, gold)
            if verdicts[i] is None:
                pending.append(i)
        if pending:
            self._run_pool(pairs, pending, verdicts)
        return verdicts

    def _start_worker(self) -> _Worker | None:
        try:
            return _Worker(self.backend)
        except Exception:  # any start failure (pipe, process limits, a daemonic parent): no worker this time
            return None

    def _run_pool(self, pairs: list, pending: deque, verdicts: list) -> None:
        """Feed the pending indices to the workers; fill verdicts; kill and replace workers that time out."""
        self._workers = [w for w in self._workers if w.process.is_alive()]
        while len(self._workers) < min(self.workers, len(pending)):
            worker = self._start_worker()
            if worker is None:
                break
            self._workers.append(worker)
        retried = set()

        def retire(worker: _Worker, replace: bool) -> None:
            worker.kill()
            self._workers.remove(worker)
            if replace and (new := self._start_worker()) is not None:
                self._workers.append(new)

        while pending or any(w.state == "busy" for w in self._workers):
            for worker in self._workers:
                if worker.state == "idle" and pending:
                    worker.index = pending.popleft()
                    try:
                        worker.conn.send(pairs[worker.index])
                        worker.state, worker.deadline = "busy", time.monotonic() + self.timeout
                    except (OSError, ValueError):  # the worker died between requests: replace it, re-queue
                        pending.appendleft(worker.index)
                        retire(worker, replace=True)
                        break
            if not self._workers:
                warnings.warn("grader_pool.Grader: the worker processes did not start (is the main script importable, "
                              "with an `if __name__ == '__main__':` guard?); grading the remaining samples as "
                              "'timeout'")
                for i in pending:
                    verdicts[i] = "timeout"
                return
            if not any(w.state != "idle" for w in self._workers):
                continue
            next_deadline = min(w.deadline for w in self._workers if w.state != "idle")
            ready = wait_for_connections([w.conn for w in self._workers if w.state != "idle"],
                                         timeout=max(0.0, next_deadline - time.monotonic()))
            for worker in [w for w in self._workers if w.conn in ready]:
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):  # died (killed from outside, out of memory): replace, retry once
                    if worker.state == "busy":
                        if worker.index in retried:
                            verdicts[worker.index] = "timeout"
                        else:
                            retried.add(worker.index)
                            pending.appendleft(worker.index)
                    retire(worker, replace=worker.state == "busy")
                    continue
                if worker.state == "busy":
                    verdicts[worker.index] = message
                worker.state = "idle"
            now = time.monotonic()
            for worker in [w for w in self._workers if w.state != "idle" and w.deadline <= now]:
                if worker.state == "busy":
                    verdicts[worker.index] = "timeout"
                retire(worker, replace=worker.state == "busy")  # a worker that cannot start is not retried

    def close(self) -> None:
        """Kill the workers (if any). Safe to call twice or on a Grader that never started one."""
        for worker in self._workers:
            worker.kill()
        self._workers = []

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
