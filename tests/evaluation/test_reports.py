"""Reports of an evaluation: the Dice table beside the paper's, the per-case CSV."""

import csv
import io

import numpy as np

from lumbar_jax.evaluation import reports
from lumbar_jax.evaluation.evaluator import Evaluation

NAN = np.nan


def _evaluation(dice_nc: np.ndarray, stage: str = "network") -> Evaluation:
    cases = [f"c{i}" for i in range(len(dice_nc))]
    return Evaluation(cases, (stage,), {stage: dice_nc}, {}, {}, {stage: []}, [0.1] * len(cases))


def test_dice_table_lists_paper_numbers():
    ev = _evaluation(np.array([[0.9, NAN, NAN, NAN, NAN]]))
    table = reports.dice_table(ev, "network", "t")
    assert "| vertebral_body | 0.900 | 0.90-0.90 | 1 | 0.864 | 0.82-0.90 |" in table
    assert "| intervertebral_disc | n/a | n/a | 0 | 0.898 | 0.86-0.92 |" in table


def test_dice_report_and_csv():
    ev = _evaluation(np.array([[0.9, 0.5, NAN, NAN, NAN], [0.7, NAN, NAN, NAN, NAN]]))
    texts = reports.dice_report(ev, "network", "title", {"split": "test"})
    assert '"vertebral_body": 0.8' in texts["test_dice.json"]
    assert '"intervertebral_disc": 0.5' in texts["test_dice.json"]
    assert texts["test_dice.md"].startswith("title")
    rows = list(csv.DictReader(io.StringIO(reports.per_case_csv(ev))))
    assert len(rows) == 2 * 5
    assert rows[0] == {
        "case": "c0",
        "stage": "network",
        "structure": "vertebral_body",
        "dice": "0.9000",
        "hd95_mm": "",
        "assd_mm": "",
    }


def test_cascade_report_says_why_instances_fail():
    from lumbar_jax.evaluation.satisfaction import Instance

    def inst(structure, recall, precision):
        return ("c0", Instance(structure, "component", (0.0, 0.0, 0.0), 100, recall, precision))

    instances = [
        inst("vertebral_body", 0.95, 0.9),  # satisfactory
        inst("vertebral_body", 0.80, 0.9),  # short on recall
        inst("vertebral_body", 0.70, 0.4),  # both
        inst("intervertebral_disc", 0.95, 0.3),  # leaks
    ]
    dice = np.full((1, 5), 0.8)
    stages = ("coarse", "cascade")
    ev = Evaluation(
        ["c0"], stages, {"coarse": dice, "cascade": dice}, {}, {}, {"cascade": instances}, [1.0]
    )
    text = reports.markdown(ev, "t")
    assert "| vertebral_body | 2 | 2 | 1 | 0.75 | 0.65 |" in text
    assert "| intervertebral_disc | 1 | 0 | 1 | 0.95 | 0.30 |" in text
    assert "| intervertebral_foramen |" not in text.split("## Why instances fail")[1].split("##")[0]
