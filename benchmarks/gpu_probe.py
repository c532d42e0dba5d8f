"""What the train step does on a GPU, measured the moment one is lent (issue 16).

  PYTHONPATH=. python benchmarks/gpu_probe.py --out=DIR [--shape=fine] [--budget_s=420]

Runs each variant in its own subprocess (XLA flags are per process) with a time-out, and
appends one JSON line per variant to DIR/gpu_probe.jsonl as it finishes, so a time-out or a
crash keeps what was measured; DIR/gpu_probe.md is the table. Variants, at the paper's fine
shape (16 x 320 x 128, batch 5, base 32 filters):

- JAX float32 and bfloat16 with the GPU defaults (XLA convolution, Flax layers);
- bfloat16 with ``--xla_gpu_force_conv_nhwc=true``, with ``conv_impl=stack2d``, with
  ``layer_impl=custom``;
- PyTorch (``benchmarks/torch_unet.py``) with AMP bfloat16 and channels_last_3d, and float32
  with TF32, on the same GPU;
- then a batch sweep of the fastest JAX variant.

Each reports compile time, the median step over ``--steps`` blocked steps after warm-up,
achieved TFLOP/s from XLA's cost analysis, and peak device memory. It imports only what the
lent machine's image has (JAX, Flax, optax; PyTorch for its variants): the U-Net and the loss
of lumbar_jax, not its configs or data pipeline. ``--shape=tiny`` is the dry run that the test
suite runs on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    # name: (input d, h, w), base filters, batch, pool factors
    "fine": ((16, 320, 128), 32, 5, ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))),
    "tiny": ((8, 32, 16), 4, 2, ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))),
}
NUM_CLASSES = 6
# name: (framework, dtype, XLA flags, conv_impl, layer_impl)
VARIANTS = {
    "jax_f32": ("jax", "float32", "", "xla", "flax"),
    "jax_bf16": ("jax", "bfloat16", "", "xla", "flax"),
    "jax_bf16_nhwc": ("jax", "bfloat16", "--xla_gpu_force_conv_nhwc=true", "xla", "flax"),
    "jax_bf16_stack2d": ("jax", "bfloat16", "", "stack2d", "flax"),
    "jax_bf16_custom": ("jax", "bfloat16", "", "xla", "custom"),
    "torch_bf16_amp_cl3d": ("torch", "bfloat16", "", "", ""),
    "torch_tf32": ("torch", "float32", "", "", ""),
}


def _random_batch(shape_dhw, batch: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    image = rng.random((batch, *shape_dhw, 1), np.float32)
    label = rng.integers(0, NUM_CLASSES, (batch, *shape_dhw)).astype(np.int32)
    return image, label


def _time(step, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def run_jax(variant: str, shape: str, batch: int, steps: int) -> dict:
    """One JAX variant: compile, warm up, time blocked steps."""
    import jax
    import jax.numpy as jnp
    import optax

    from lumbar_jax.model.unet3d import UNet3D
    from lumbar_jax.training import losses

    _, dtype, _, conv_impl, layer_impl = VARIANTS[variant]
    shape_dhw, base, _, pools = SHAPES[shape]
    model = UNet3D(
        NUM_CLASSES, base, pools, conv_impl=conv_impl, layer_impl=layer_impl, dtype=jnp.dtype(dtype)
    )
    image, label = _random_batch(shape_dhw, batch)
    labeled = jnp.ones((batch, NUM_CLASSES), bool)
    params = model.init(jax.random.key(0), jnp.zeros((1, *shape_dhw, 1)))["params"]
    tx = optax.adam(1e-4)

    def step(params, opt_state, image, label):
        def loss_fn(p):
            return losses.segmentation_loss(model.apply({"params": p}, image), label, labeled)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = (params, tx.init(params))
    start = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(*state, image, label).compile()
    compile_s = time.perf_counter() - start
    flops = float((compiled.cost_analysis() or {}).get("flops", 0.0))
    image, label = jax.device_put(image), jax.device_put(label)

    def one():
        nonlocal state
        *new, loss = compiled(*state, image, label)
        state = tuple(new)
        loss.block_until_ready()

    _time(one, 2)  # warm-up
    times = _time(one, steps)
    median = statistics.median(times)
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    return {
        "jax": jax.__version__,
        "device": device.device_kind,
        "compile_s": round(compile_s, 2),
        "step_s_median": median,
        "samples_per_s": batch / median,
        "tflops_per_s": flops / median / 1e12,
        "flops_per_step": flops,
        "peak_memory_gib": stats.get("peak_bytes_in_use", 0) / 2**30,
    }


def run_torch(variant: str, shape: str, batch: int, steps: int) -> dict:
    """One PyTorch variant (the same U-Net in benchmarks/torch_unet.py) on the GPU."""
    import torch

    from benchmarks.torch_unet import TorchUNet3D, segmentation_loss

    _, dtype, _, _, _ = VARIANTS[variant]
    shape_dhw, base, _, pools = SHAPES[shape]
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    model = TorchUNet3D(NUM_CLASSES, base, pools).to(device)
    image, label = _random_batch(shape_dhw, batch)
    image = torch.from_numpy(image).permute(0, 4, 1, 2, 3).contiguous().to(device)
    label = torch.from_numpy(label).long().to(device)
    amp = dtype == "bfloat16"
    if amp:
        model = model.to(memory_format=torch.channels_last_3d)
        image = image.contiguous(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def one():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(image)
        loss = segmentation_loss(logits, label)
        loss.backward()
        optimizer.step()
        loss.item()  # waits for the step

    _time(one, 2)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = _time(one, steps)
    median = statistics.median(times)
    return {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "step_s_median": median,
        "samples_per_s": batch / median,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
    }


def child(args: argparse.Namespace) -> None:
    """Measures one variant and prints one JSON line."""
    framework = VARIANTS[args.variant][0]
    run = run_jax if framework == "jax" else run_torch
    result = run(args.variant, args.shape, args.batch, args.steps)
    print(json.dumps({"variant": args.variant, "batch": args.batch, **result}), flush=True)


def _launch(variant: str, batch: int, args: argparse.Namespace, timeout: float) -> dict:
    """Runs one variant in a subprocess; its JSON line, or what went wrong."""
    framework, _, flags, _, _ = VARIANTS[variant]
    if framework == "torch":
        try:
            import torch  # noqa: F401  (only whether it is there)
        except ImportError:
            return {"variant": variant, "batch": batch, "skipped": "PyTorch is not installed"}
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()}
    command = [sys.executable, __file__, "--child", f"--variant={variant}"]
    command += [f"--shape={args.shape}", f"--batch={batch}", f"--steps={args.steps}"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return {"variant": variant, "batch": batch, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"variant": variant, "batch": batch, "error": " | ".join(tail)[-600:]}
    return json.loads(lines[-1])


def markdown(rows: list[dict]) -> str:
    """The probe's table."""
    lines = [
        "| variant | batch | device | compile (s) | step (s) | samples/s | TFLOP/s | peak GiB | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "step_s_median" not in r:
            note = r.get("skipped") or r.get("error", "")
            lines.append(f"| {r['variant']} | {r['batch']} | | | | | | | {note} |")
            continue
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['device']} | {r.get('compile_s', '')} | "
            f"{r['step_s_median']:.4f} | {r['samples_per_s']:.1f} | "
            f"{r.get('tflops_per_s', float('nan')):.1f} | {r['peak_memory_gib']:.2f} | |"
        )
    return "\n".join(lines) + "\n"


def parent(args: argparse.Namespace) -> None:
    """Every variant, then a batch sweep of the fastest JAX one, within the time budget."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget_s
    rows: list[dict] = []

    def measure(variant: str, batch: int) -> None:
        left = deadline - time.monotonic()
        if left < 10:
            row = {"variant": variant, "batch": batch, "skipped": "out of the time budget"}
        else:
            row = _launch(variant, batch, args, min(args.variant_timeout_s, left))
        rows.append(row)
        with (out / "gpu_probe.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    _, _, batch, _ = SHAPES[args.shape]
    for variant in args.variants.split(",") if args.variants else VARIANTS:
        measure(variant, batch)
    timed = [r for r in rows if r["variant"].startswith("jax") and "step_s_median" in r]
    if timed:
        best = min(timed, key=lambda r: r["step_s_median"])["variant"]
        for sweep_batch in (b for b in args.sweep if b != batch):
            measure(best, sweep_batch)
    (out / "gpu_probe.md").write_text(markdown(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_probe", help="folder for the results")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="fine")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--budget_s", type=float, default=420, help="for all the variants")
    parser.add_argument("--variant_timeout_s", type=float, default=150)
    parser.add_argument("--variants", default="", help="comma-separated subset")
    parser.add_argument(
        "--sweep", type=lambda s: [int(b) for b in s.split(",") if b], default=[2, 8, 16]
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    # Run as a script (on the lent machine, without an install): the repository's packages.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
