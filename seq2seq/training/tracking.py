"""Run tracking: a local ``metrics.jsonl`` always, Weights & Biases when enabled.

``tracking.wandb``:
  * ``auto``: online when an API key is configured (``WANDB_API_KEY`` or ``~/.netrc``),
    otherwise offline (``wandb sync <run dir>/wandb/offline-run-*`` uploads it later);
  * ``online`` / ``offline`` / ``disabled``: as named. ``WANDB_MODE`` in the environment
    wins over the config (tests set ``WANDB_MODE=disabled``).
``wandb`` is imported only when it is used; if it is not installed, a warning is printed
and only ``metrics.jsonl`` is written.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..config import Config, TrackingConfig

METRICS_FILE = "metrics.jsonl"


def wandb_mode(cfg: TrackingConfig) -> str:
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("online", "offline", "disabled", "dryrun"):
        return "offline" if env == "dryrun" else env
    if cfg.wandb != "auto":
        return cfg.wandb
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="replace"))
    return "online" if has_key else "offline"


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop records logged after ``step`` (work lost by a crash, about to be redone)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by a kill
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    os.replace(tmp, path)


class Tracker:
    """Logs scalars and sample tables; ``rank != 0`` logs nothing (distributed runs)."""

    def __init__(self, cfg: Config, run_dir: Path, *, rank: int = 0, resume_id: str | None = None) -> None:
        self.run_dir = run_dir
        self.enabled = rank == 0
        self.run: Any = None
        self.run_id: str | None = resume_id
        self._file = open(run_dir / METRICS_FILE, "a", encoding="utf-8") if self.enabled else None  # noqa: SIM115
        mode = wandb_mode(cfg.tracking)
        if not self.enabled or mode == "disabled":
            return
        try:
            import wandb
        except ImportError:
            print("warning: wandb is not installed; logging to metrics.jsonl only", file=sys.stderr)
            return
        t = cfg.tracking
        try:
            self.run = wandb.init(
                project=t.project, entity=t.entity or None, name=t.name or None, group=t.group or None,
                tags=list(t.tags), config=cfg.to_dict(), dir=str(run_dir), mode=mode,  # type: ignore[arg-type]
                id=resume_id, resume="allow" if resume_id else None,
            )
            self.run_id = self.run.id
        except Exception as e:  # W&B must never take a training run down
            print(f"warning: wandb.init failed ({e}); logging to metrics.jsonl only", file=sys.stderr)
            self.run = None

    def log(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        assert self._file is not None
        self._file.write(json.dumps({"step": step, **record}) + "\n")
        self._file.flush()
        if self.run is not None:
            self.run.log(record, step=step)

    def log_samples(self, rows: list[tuple[str, str, str]], epoch: int, step: int) -> None:
        """A table of (source, reference, hypothesis) per epoch."""
        if self.run is None:
            return
        import wandb

        table = wandb.Table(columns=["epoch", "source", "reference", "hypothesis"],
                            data=[[epoch, *r] for r in rows])
        self.run.log({"samples": table}, step=step)

    @property
    def wants_images(self) -> bool:
        """Whether W&B is logging (images are made only then)."""
        return self.run is not None

    def log_alignments(self, alignments: list[Any], step: int) -> None:
        """Attention heatmaps (``translation.Alignment``) as W&B images; needs matplotlib."""
        if self.run is None or not alignments:
            return
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            from .figures import alignment_figure
        except ImportError:  # matplotlib is an optional extra
            return
        import numpy as np
        import wandb

        images = []
        for a in alignments:
            canvas = FigureCanvasAgg(alignment_figure(a.source, a.target, a.weights, a.text))
            canvas.draw()
            images.append(wandb.Image(np.asarray(canvas.buffer_rgba())[..., :3], caption=a.text))
        self.run.log({"valid/attention": images}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            for k, v in values.items():
                self.run.summary[k] = v

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.run is not None:
            self.run.finish()
            self.run = None
