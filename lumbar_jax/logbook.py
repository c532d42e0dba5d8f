"""Run records in the workdir: ``metrics.jsonl`` (one JSON object a line) and a PNG of curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters
import matplotlib.pyplot as plt

from lumbar_jax import STRUCTURES


class Logbook:
    """Appends metric rows and redraws the training curves."""

    def __init__(self, workdir: str | Path):
        self.path = Path(workdir) / "metrics.jsonl"
        self.plot_path = Path(workdir) / "training_curves.png"

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

    def plot(self) -> None:
        rows = self.rows()
        train = [r for r in rows if "train_loss" in r]
        val = [r for r in rows if "val_dice" in r]
        fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(11, 4))
        if train:
            ax_loss.plot([r["step"] for r in train], [r["train_loss"] for r in train])
        ax_loss.set(xlabel="step", ylabel="training loss (CE + soft Dice)", yscale="log")
        ax_loss.grid(alpha=0.3)
        for name in STRUCTURES:
            pts = [
                (r["step"], r["val_dice"][name]) for r in val if r["val_dice"].get(name) is not None
            ]
            if pts:
                ax_dice.plot(*zip(*pts, strict=True), marker="o", label=name)
        ax_dice.set(xlabel="step", ylabel="validation Dice", ylim=(0, 1))
        ax_dice.grid(alpha=0.3)
        if val:
            ax_dice.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(self.plot_path, dpi=80)
        plt.close(fig)
