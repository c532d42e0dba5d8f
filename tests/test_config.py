import subprocess
import sys

import pytest

from lumbar_jax import config as config_lib
from tests.helpers import ROOT


def test_paper_values_by_name():
    fine = config_lib.load_config("fine")
    coarse = config_lib.load_config("coarse")
    assert fine.data.input_shape == (16, 320, 128)
    assert coarse.data.input_shape == (16, 256, 128)
    for c in (fine, coarse):
        assert c.data.num_classes == 6
        assert (c.optim.learning_rate, c.optim.batch_size, c.optim.num_epochs) == (1e-4, 5, 400)
        assert c.model.base_filters == 32 and len(c.model.pool_factors) == 4
        assert c.inference.background_scale == (1.0,)  # the plain argmax
    assert fine.data.crop == "label" and coarse.data.crop == "image"


def test_size_arguments_override_only_some_fields():
    paper = config_lib.to_dict(config_lib.load_config("fine"))
    cpu = config_lib.to_dict(config_lib.load_config("fine:cpu"))
    changed = {
        f"{section}.{key}"
        for section, values in paper.items()
        if isinstance(values, dict)
        for key in values
        if values[key] != cpu[section][key]
    }
    assert changed == {
        "data.phantom_matrix",
        "data.input_shape",
        "data.crop_tiles",
        "data.synthesis",
        "synthesis.prob",
        "loss.class_weights",
        "inference.background_scale",
        "inference.tile_step",
        "inference.flip_tta",
        "inference.box_scales",
        "model.base_filters",
        "optim.batch_size",
        "optim.learning_rate",
        "optim.num_epochs",
        "optim.schedule",
        "optim.warmup_epochs",
        "train.eval_every_epochs",
    }
    assert config_lib.load_config("coarse:tiny").data.input_shape == (8, 32, 16)
    # make demo-full: only the fine stage's shape (one crop, not tiles) and length differ.
    full = config_lib.to_dict(config_lib.load_config("fine:cpu_full"))
    assert {k for k in full["data"] if full["data"][k] != cpu["data"][k]} == {
        "input_shape",
        "crop_tiles",
    }
    assert full["data"]["crop_tiles"] == 1 and cpu["data"]["crop_tiles"] == 3
    # The cascade: four fine tiles half a tile apart and the flip at cpu; demo-full as measured.
    assert (cpu["inference"]["tile_step"], cpu["inference"]["flip_tta"]) == (0.5, True)
    assert not full["inference"]["flip_tta"]
    assert tuple(cpu["inference"]["box_scales"]) == (1.0, 1.1, 1.2)
    assert tuple(full["inference"]["box_scales"]) == (1.0,)
    assert tuple(full["data"]["input_shape"]) == (16, 192, 64) and full["optim"]["num_epochs"] == 48
    coarse = [
        config_lib.to_dict(config_lib.load_config(f"coarse:{a}")) for a in ("cpu", "cpu_full")
    ]
    assert coarse[0] == coarse[1]


def test_by_path_and_overrides():
    c = config_lib.load_config(
        f"{ROOT / 'configs' / 'coarse.py'}:tiny",
        {
            "optim.batch_size": "3",
            "optim.learning_rate": "1",
            "data.input_shape": "(8, 64, 32)",
            "model.remat": "true",
            "data.root": "/data/x",
        },
    )
    assert c.stage == "coarse"
    assert c.optim.batch_size == 3
    assert c.optim.learning_rate == 1.0 and isinstance(c.optim.learning_rate, float)
    assert c.data.input_shape == (8, 64, 32)
    assert c.model.remat is True
    assert c.data.root == "/data/x"


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"Unknown config 'fin'; available: coarse, fine"):
        config_lib.load_config("fin")
    with pytest.raises(ValueError, match="does not exist"):
        config_lib.load_config("nowhere/fine.py")


def test_unknown_argument_and_field():
    with pytest.raises(ValueError, match="Unknown config argument 'gpu'"):
        config_lib.load_config("fine:gpu")
    with pytest.raises(
        ValueError,
        match=r"config.optim has batch_size, final_lr_fraction, learning_rate, num_epochs",
    ):
        config_lib.load_config("fine", {"optim.lr": "1e-3"})
    with pytest.raises(ValueError, match=r"config.optim.batch_size is int \(5\); got '2.5'"):
        config_lib.load_config("fine", {"optim.batch_size": "2.5"})


def test_config_is_locked_and_round_trips(tmp_path):
    c = config_lib.load_config("fine:tiny")
    with pytest.raises(AttributeError):
        c.optim.momentum = 0.9
    config_lib.save_config(c, tmp_path)
    back = config_lib.read_config(tmp_path / "config.json")
    assert config_lib.to_dict(back) == config_lib.to_dict(c)
    assert back.model.pool_factors == c.model.pool_factors


def test_split_config_args():
    spec, overrides, rest = config_lib.split_config_args(
        ["prog", "--config=fine:cpu", "--config.optim.batch_size=2", "--workdir=w"]
    )
    assert spec == "fine:cpu"
    assert overrides == {"optim.batch_size": "2"}
    assert rest == ["prog", "--workdir=w"]


@pytest.mark.slow
def test_cli_reports_unknown_config():
    result = subprocess.run(
        [sys.executable, "-m", "lumbar_jax.train", "--config=nope", "--workdir=/tmp/unused"],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert "Unknown config 'nope'; available: coarse, fine" in result.stderr
