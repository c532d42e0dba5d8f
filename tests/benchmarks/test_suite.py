"""The benchmark suite runs on tiny shapes and writes well-formed results (no timing asserted).

Compiling a train step on XLA:CPU takes seconds even for a tiny model, so the suite runs once
(module fixture) on a one-level U-Net, with scaling over two simulated devices in mesh mode
only; the inference benchmark has its own test (test_inference.py).
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import common, hardware, layers, readme, roofline, run, train_step
from lumbar_jax import config as config_lib
from lumbar_jax.model.conv import CONV_IMPLS, resolve_conv_impl

TINY = {
    "model.pool_factors": "((1, 2, 2),)",
    "model.base_filters": "2",
    "data.input_shape": "(2, 8, 8)",
}
TINY_SUITE = {
    "overrides": TINY,
    "train_step": [("fine:tiny", 2, "float32")],
    "steps": 1,
    "torch_steps": 1,
    "scaling": {
        "config": "fine:tiny",
        "devices": 2,
        "per_device": 1,
        "global_batch": 0,
        "modes": ["mesh"],
    },
    "roofline": {"config": "fine:tiny", "batch": 1, "dtypes": ["float32"]},
    "pipeline": {"config": "fine:tiny", "cases": 4, "samples": 2, "workers": [0]},
    "layers": None,
    "inference_series": 1,
}


@pytest.fixture(scope="module")
def suite_result(tmp_path_factory):
    """(output folder, results) of the tiny suite, run once for the module."""
    out = tmp_path_factory.mktemp("bench")
    result = run.run_suite("tiny", out, skip=["inference"], suite=TINY_SUITE)
    return out, result


def test_suite_writes_json_markdown_and_plots(suite_result):
    out, _ = suite_result
    saved = json.loads((out / "results.json").read_text())
    meta = saved["meta"]
    for key in ("date", "backend", "device", "versions", "load_avg_1m"):
        assert key in meta
    assert set(meta["load_avg_1m"]) == {"start", "end"}
    (step,) = saved["train_step"]["rows"]
    assert step["step_s_median"] > 0 and step["flops_per_step"] > 0
    assert step["samples_per_s"] == pytest.approx(2 / step["step_s_median"])
    if jax.default_backend() == "cpu":
        assert 0 < step["utilization"] < 1
    assert [r["devices"] for r in saved["scaling"]["rows"]] == [1, 2]
    assert saved["scaling"]["rows"][0]["efficiency"] == 1.0
    assert {r["gpu"] for r in saved["roofline"]["rows"]} == {"A100 SXM 80GB", "H100 SXM"}
    assert saved["pipeline"]["rows"][0]["samples_per_s"] > 0
    text = (out / "results.md").read_text()
    for heading in ("### Train step", "### Scaling", "### Roofline", "### Input pipeline"):
        assert heading in text
    for png in ("throughput.png", "scaling.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert saved["plots"] == ["throughput.png", "scaling.png"]
    assert set(saved["part_seconds"]) == {"train_step", "scaling", "roofline", "pipeline"}
    assert saved["meta"]["wall_s"] >= sum(saved["part_seconds"].values()) - 1
    assert step["layer_impl"].startswith("auto -> ")
    # results.md is the suite's header and each part's own section, rendered from the JSON.
    assert text == run.markdown(saved) + "\n"
    assert f"### Train step\n\n{train_step.markdown(saved['train_step'])}\n### Scaling" in text


def test_suite_compares_with_pytorch_when_installed(suite_result):
    pytest.importorskip("torch")
    (step,) = suite_result[1]["train_step"]["rows"]
    assert step["params_match"] and step["output_shape_match"]
    assert step["jax_over_torch_time"] > 0


def test_pytorch_comparison_and_its_note(suite_result):
    """The PyTorch fields of a train-step row and the note under the table, with or without torch."""
    (row,) = suite_result[1]["train_step"]["rows"]
    config = common.load_config("fine:tiny", TINY)
    params = common.param_count(config)
    reference = {
        "torch": "2.x",
        "threads": 2,
        "step_s_median": 2 * row["step_s_median"],
        "samples_per_s": 1.0,
        "params": params,
        "output_shape_bdhwc": [2, 2, 8, 8, config.data.num_classes],
    }
    same = train_step.with_reference(row, reference, config)
    assert same["jax_over_torch_time"] == pytest.approx(0.5)
    assert same["params_jax"] == params and same["params_match"] and same["output_shape_match"]
    text = train_step.markdown({"rows": [same]})
    assert f"| {2 * row['step_s_median']:.3f} | 0.50 |" in text
    assert f"parameter counts agree ({params:,} for fine:tiny), output shapes agree" in text
    other = train_step.with_reference(row, {**reference, "params": params + 1}, config)
    assert not other["params_match"]
    assert "parameter counts DIFFER" in train_step.markdown({"rows": [same, other]})


def test_timing_rounds_alternate_with_a_warm_up_each_turn():
    calls = []
    timers = [lambda: calls.append("a"), lambda: calls.append("b")]
    times = common.time_in_rounds(timers, [2, 1], rounds=2)
    assert calls == ["a", "a", "a", "b", "b"] * 2
    assert [len(t) for t in times] == [4, 2] and all(t >= 0 for t in times[0] + times[1])
    first, rest = common.time_calls(lambda: calls.append("c"), 3)
    assert first >= 0 and len(rest) == 3 and calls.count("c") == 4


def test_a_skipped_part_says_why(suite_result):
    saved = {**suite_result[1], "inference": {"skipped": "no trained runs"}}
    text = run.markdown(saved)
    assert "### Input pipeline\n" in text
    assert text.endswith("### Inference\n\nSkipped: no trained runs.\n")


def test_roofline_arithmetic():
    (a100, h100) = roofline.predict(1e12, 1e9, 4e6, "bfloat16", gpus=8)
    assert h100["compute_s"] == pytest.approx(1e12 / 989.4e12)
    assert h100["bound"] == "compute" and 0 < h100["utilization"] <= 1
    # Ring all-reduce: 2 * 7/8 * 4 MB over 450 GB/s.
    assert h100["allreduce_s"] == pytest.approx(2 * 7 / 8 * 4e6 / 450e9)
    assert a100["step_s"] > h100["step_s"]


def test_layer_list_follows_the_unet():
    config = config_lib.load_config("fine:cpu")
    names = [layer["name"] for layer in layers.conv_layers(config)]
    assert len(names) == 2 * (2 * len(config.model.pool_factors) + 1)
    first, dec0 = layers.conv_layers(config)[0], layers.conv_layers(config)[-2]
    shape = tuple(config.data.input_shape)
    assert (first["cin"], first["cout"], first["dhw"]) == (1, 8, shape)
    assert (dec0["name"], dec0["cin"], dec0["cout"]) == ("dec0.block0", 16, 8)
    bottleneck = next(x for x in layers.conv_layers(config) if x["name"] == "bottleneck.block0")
    # Pooled by (1, 2, 2) then three times by 2 in every axis.
    assert bottleneck["dhw"] == (shape[0] // 8, shape[1] // 16, shape[2] // 16)
    assert bottleneck["cout"] == 128


def test_layer_timing_and_table():
    config = config_lib.load_config("fine:tiny", TINY)
    layer = {"name": "enc0.block1", "dhw": (2, 8, 8), "cin": 2, "cout": 2}
    rows = []
    decoder = {"name": "dec0.block0", "dhw": (2, 8, 8), "cin": 4, "cout": 2}  # two inputs
    for impl in CONV_IMPLS[1:]:
        assert layers.time_jax_block(layer, 1, config, impl, "float32", 1) > 0
        assert layers.time_jax_block(decoder, 1, config, impl, "float32", 1) > 0
    row = {"layer": "x", "shape_bdhwc_in": [1, 2, 8, 8, 2], "cout": 2}
    row.update({"jax_stack2d_float32_s": 0.002, "torch_float32_s": 0.001})
    rows.append(row)
    table = layers.markdown({"impls": ["stack2d"], "dtypes": ["float32"], "rows": rows})
    assert "| 2.00 |" in table and table.count("\n") == 4


def test_pytorch_reference_matches_jax_model():
    pytest.importorskip("torch")
    from benchmarks import torch_unet

    for name in ("fine", "coarse:cpu"):
        config = config_lib.load_config(name)
        num_torch = torch_unet.num_params(torch_unet.model_from_config(config))
        assert num_torch == common.param_count(config)
    config = config_lib.load_config("fine:tiny")
    shape = torch_unet.output_shape(config, batch_size=2)
    assert shape == (2, *config.data.input_shape, config.data.num_classes)


def test_pytorch_loss_matches_jax_loss():
    torch = pytest.importorskip("torch")
    from benchmarks import torch_unet
    from lumbar_jax.training import losses

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5, 6)).astype(np.float32)
    label = rng.integers(0, 6, (2, 3, 4, 5))
    expected, _ = losses.segmentation_loss(
        jnp.asarray(logits), jnp.asarray(label), jnp.ones((2, 6), bool)
    )
    got = torch_unet.segmentation_loss(
        torch.from_numpy(logits).permute(0, 4, 1, 2, 3), torch.from_numpy(label)
    )
    assert math.isclose(float(got), float(expected), rel_tol=1e-5)


def test_cpu_peak_is_measured():
    peak = hardware.measure_cpu_matmul_peak("float32", n=128, repeats=2)
    assert peak["flops_per_s"] > 0
    assert resolve_conv_impl("auto") in CONV_IMPLS


def test_cases_flag_parsing():
    assert run.parse_cases(["fine/1/float32", "coarse:cpu/5/bfloat16"]) == [
        ("fine", 1, "float32"),
        ("coarse:cpu", 5, "bfloat16"),
    ]
    for bad in ("fine/1", "fine/one/float32", "fine/1/float16"):
        with pytest.raises(ValueError, match=f"--cases entry '{bad}'"):
            run.parse_cases([bad])


def test_readme_section_is_replaced_between_markers():
    begin, end = readme.markers("quick")
    other = "\n".join(readme.markers("fine_b1"))
    text = f"# Title\n\n{begin}\nold table\n{end}\n\n{other}\n## Next\n"
    new = readme.splice(text, "| new | table |\n")
    assert new == f"# Title\n\n{begin}\n| new | table |\n{end}\n\n{other}\n## Next\n"
    assert readme.splice(new, "again") == new.replace("| new | table |", "again")
    both = readme.splice(new, "b1 table", "fine_b1")
    assert "| new | table |" in both and "b1 table\n<!-- benchmarks:fine_b1:end -->" in both
    for broken in ("no markers", f"{end}\n{begin}", f"{begin}{begin}{end}"):
        with pytest.raises(ValueError):
            readme.splice(broken, "x")


def test_profile_attributes_the_step_to_model_parts():
    """Every traced operation lands in a part; the conv layers and the loss are named."""
    from benchmarks import profile_step

    config = config_lib.load_config("fine:tiny", TINY)
    result = profile_step.profile(config, batch_size=2, steps=1)
    parts = result["parts_ms"]
    assert result["ops_ms_total"] == pytest.approx(sum(parts.values()))
    assert result["step_s_profiled"] > 0
    assert "enc0/block0/conv forward" in parts and "dec0/block1/conv backward" in parts
    assert "loss forward" in parts and "optimizer" in parts
    named = sum(ms for part, ms in parts.items() if part != profile_step.UNKNOWN)
    assert named > 0.5 * result["ops_ms_total"]
    table = profile_step.markdown(result, top=5)
    kinds = {profile_step.kind(part) for part in parts}
    assert {"conv forward", "conv backward", "norm forward", "up-conv forward"} <= kinds
    # Two headers, one row per kind, five part rows.
    assert table.count("\n| ") == 2 + len(kinds) + 5 and "ms per step" in table


def test_model_part_names():
    from benchmarks.profile_step import kind, model_part

    assert (
        model_part("jit(train_step)/transpose(jvp(UNet3D))/dec0/block0/conv/conv_general_dilated")
        == "dec0/block0/conv backward"
    )
    assert model_part("jit(train_step)/jvp(UNet3D)/up1/bdhwc,ijkco->bdihjwko/dot") == (
        "up1 forward"
    )
    assert model_part("jit(train_step)/jvp(UNet3D)/reduce_max") == (
        "pooling and other UNet3D forward"
    )
    assert model_part("jit(train_step)/optimizer/mul") == "optimizer"
    assert model_part("jit(train_step)/transpose(jvp(loss))/exp") == "loss backward"
    assert kind("dec0/block0/conv backward") == "conv backward"
    assert kind("up1 forward") == "up-conv forward"
    assert kind("enc0/block1 backward") == "relu backward"
    assert kind("optimizer") == "optimizer"


def test_crop_content_counts_what_the_samples_hold(phantom_root):
    from benchmarks import crop_content
    from lumbar_jax.data import datasets
    from tests.conftest import tiny_config

    dataset = datasets.load_dataset(phantom_root)
    whole = crop_content.crop_content(tiny_config(phantom_root), dataset, 12)
    # A crop around the labelled spine holds its bodies, discs and canal every time.
    for name in ("vertebral_body", "intervertebral_disc", "spinal_canal"):
        assert whole[name]["present"] == 1.0
    structures = [row for name, row in whole.items() if name != "in-plane voxel mm"]
    assert 0.0 < sum(row["voxels"] for row in structures) < 1.0
    assert whole["vertebral_body"]["voxels"] > whole["cord_cauda_equina"]["voxels"]
    # Two tiles of the same crop: a finer voxel than the whole crop's.
    tiled = crop_content.crop_content(
        tiny_config(phantom_root, **{"data.crop_tiles": "2"}), dataset, 12
    )
    voxel, tiled_voxel = whole["in-plane voxel mm"], tiled["in-plane voxel mm"]
    assert tiled_voxel["median"] < voxel["median"] <= voxel["max"]
    # The coarse stage's whole series: the structures take a smaller share of it.
    series = crop_content.crop_content(tiny_config(phantom_root, "coarse"), dataset, 12)
    assert series["vertebral_body"]["voxels"] < whole["vertebral_body"]["voxels"]
    again = crop_content.crop_content(tiny_config(phantom_root), dataset, 12)
    assert again == whole  # the draws follow the seed
    table = crop_content.markdown(whole, "fine:tiny", 12)
    assert "| vertebral_body | 100.0 % |" in table
