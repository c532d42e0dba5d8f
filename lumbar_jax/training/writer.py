"""What a run reports: ``metrics.jsonl``, TensorBoard events, training curves and the console.

Only the lead process (process 0) reports; the others get a ``SilentWriter`` with the same
methods, so the training loop has no ``if lead`` branches.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lumbar_jax import files
from lumbar_jax.labels import STRUCTURES


class Logbook:
    """``metrics.jsonl``: one JSON object a line, in step order."""

    def __init__(self, workdir: str | Path):
        self.path = Path(workdir) / "metrics.jsonl"

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drops rows past ``step``: a resumed run repeats those steps."""
        kept = [r for r in self.rows() if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def plot_curves(rows: list[dict], path: Path) -> None:
    """Training loss and validation Dice per structure over steps, as a PNG."""
    # The object interface on an Agg canvas: no pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [r for r in rows if "train_loss" in r]
    val = [r for r in rows if "val_dice" in r]
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_dice = fig.subplots(1, 2)
    if train:
        ax_loss.plot([r["step"] for r in train], [r["train_loss"] for r in train])
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log")
    ax_loss.grid(alpha=0.3)
    for name in STRUCTURES:
        pts = [(r["step"], r["val_dice"][name]) for r in val if r["val_dice"].get(name) is not None]
        if pts:
            ax_dice.plot(*zip(*pts, strict=True), marker="o", label=name)
    ax_dice.set(xlabel="step", ylabel="validation Dice", ylim=(0, 1))
    ax_dice.grid(alpha=0.3)
    if val:
        ax_dice.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _flat_scalars(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics row as ``a/b`` names (TensorBoard groups by the prefix)."""
    out = {}
    for key, value in row.items():
        if key in ("step", "epoch"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flat_scalars(value, f"{name}/")
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            out[name] = float(value)
    return out


class RunWriter:
    """The lead process's reports of one run.

    Args:
      workdir: the run folder.
      start_step: the step the run starts (or resumes) from; later rows are dropped.
      stop_step: the step it runs to, for the progress bar.
    """

    def __init__(self, workdir: str | Path, start_step: int, stop_step: int):
        from tensorboardX import SummaryWriter
        from tqdm import tqdm

        self.workdir = Path(workdir)
        self.logbook = Logbook(self.workdir)
        self.logbook.truncate_after(start_step)
        # purge_step: TensorBoard drops the events a resumed run writes again.
        self._tensorboard = SummaryWriter(
            str(self.workdir / "tensorboard"), purge_step=start_step + 1, flush_secs=30
        )
        self._progress = tqdm(
            total=stop_step, initial=start_step, desc="train", unit="step", mininterval=2
        )

    def write(self, row: dict[str, Any]) -> None:
        """Appends a metrics row (with ``step``) to metrics.jsonl and TensorBoard."""
        self.logbook.write(row)
        for name, value in _flat_scalars(row).items():
            self._tensorboard.add_scalar(name, value, row["step"])

    def plot(self) -> None:
        plot_curves(self.logbook.rows(), self.workdir / "training_curves.png")

    def note(self, text: str) -> None:
        """A line on the console that does not break the progress bar."""
        self._progress.write(text)

    def advance(self, steps: int = 1, **postfix: str) -> None:
        self._progress.update(steps)
        if postfix:
            self._progress.set_postfix(**postfix)

    def print(self, text: str) -> None:
        print(text, flush=True)

    def write_files(self, texts: dict[str, str]) -> None:
        """Writes each ``{name: text}`` into the run folder (atomically)."""
        for name, text in texts.items():
            files.write_text(self.workdir / name, text)

    def close(self) -> None:
        self._progress.close()
        self._tensorboard.close()


class SilentWriter:
    """``RunWriter``'s methods, doing nothing: what processes other than the lead get."""

    def write(self, row: dict[str, Any]) -> None:
        pass

    def plot(self) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def advance(self, steps: int = 1, **postfix: str) -> None:
        pass

    def print(self, text: str) -> None:
        pass

    def write_files(self, texts: dict[str, str]) -> None:
        pass

    def close(self) -> None:
        pass


def make_writer(
    workdir: str | Path, lead: bool, start_step: int, stop_step: int
) -> RunWriter | SilentWriter:
    """A ``RunWriter`` on the lead process, a ``SilentWriter`` elsewhere."""
    return RunWriter(workdir, start_step, stop_step) if lead else SilentWriter()
