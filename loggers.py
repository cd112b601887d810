"""The external loggers behind --log-with: each metrics row also as TensorBoard and / or Weights & Biases scalars.
rundir.external_loggers imports this module only when --log-with names one; metrics.jsonl stays the source of truth.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

from data import UsageError
from rundir import logger_problems


class ExternalLoggers:
    """Each metrics row's numbers, also as TensorBoard and/or Weights & Biases scalars at the row's step.

    TensorBoard: event files in out_dir/tensorboard (torch.utils.tensorboard.SummaryWriter); a resumed run
    purges the events after its checkpoint's step, as truncate_logs does for metrics.jsonl. W&B: a run under
    out_dir/wandb, offline by default (`wandb sync out_dir/wandb/offline-run-*` uploads it later); its id is
    kept in out_dir/wandb/run_id, so a resumed run continues the same W&B run. Only finite numbers are sent
    (a null of strict_json and the `nonfinite` list are not); keys keep their names ("eval/gsm8k").
    Use as a context manager (rank 0 only); with kinds empty it does nothing.

    Raises: UsageError when a logger's package is not installed.
    """

    def __init__(self, kinds: tuple[str, ...], out_dir: Path, config: dict, start_step: int = 0,
                 wandb_project: str = "zero-rl", wandb_mode: str = "offline"):
        if problems := logger_problems(kinds):
            raise UsageError("\n".join(problems))
        self.tensorboard = self.wandb = None
        if "tensorboard" in kinds:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)
        if "wandb" in kinds:
            import wandb

            id_file = out_dir / "wandb" / "run_id"
            id_file.parent.mkdir(parents=True, exist_ok=True)
            run_id = id_file.read_text().strip() if start_step and id_file.is_file() else uuid.uuid4().hex[:8]
            id_file.write_text(run_id + "\n")
            self.wandb = wandb.init(project=wandb_project, name=out_dir.name, id=run_id, resume="allow",
                                    dir=str(out_dir), mode=wandb_mode, config=config)

    def log(self, row: dict) -> None:
        """Send the finite numbers of one metrics row at step row["step"]."""
        scalars = {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))
                   and not isinstance(v, bool) and math.isfinite(v)}
        if self.tensorboard:
            for key, value in scalars.items():
                self.tensorboard.add_scalar(key, value, row["step"])
            self.tensorboard.flush()
        if self.wandb:
            self.wandb.log(scalars, step=row["step"])

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()
        if self.wandb:
            self.wandb.finish()
        self.tensorboard = self.wandb = None

    def __enter__(self) -> "ExternalLoggers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
