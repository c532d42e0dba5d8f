"""Where a train step's time goes, layer by layer, from a profiler trace of the compiled step.

  python -m benchmarks.profile_step --config=fine:cpu --batch=2 [--config.model.dtype=bfloat16]

Runs the jitted train step under ``jax.profiler`` and attributes every executed XLA operation
to the model part it came from (``enc0/block1/conv``, ``up0``, ``dec0/block0/norm``, the loss,
the optimizer), forward or backward, using the op-name metadata of the compiled HLO. Prints a
Markdown table (milliseconds per step) and writes JSON with ``--output``. Operations without
metadata (layout copies XLA inserts, mostly for weight gradients) are listed under
``(layout copies and other)``. On CPU each operation is one trace event; on GPUs the same
events show kernel launches, so the table is an approximation there.
"""

from __future__ import annotations

import collections
import gzip
import json
import re
import tempfile
import time
from pathlib import Path

import jax
import ml_collections
from absl import app, flags

from benchmarks import common
from lumbar_jax import config as config_lib

FLAGS = flags.FLAGS
_OVERRIDES: dict[str, str] = {}
UNKNOWN = "(layout copies and other)"
# Trace events that are the runtime's own bookkeeping, not operations of the step.
_RUNTIME_EVENTS = ("$", "Thunk", "Pjit", "Common", "Slinky", "Threadpool", "Wait", "end: ")


def define_flags() -> None:
    """Defines the command line's flags (only when run as a program; see train_step.py)."""
    flags.DEFINE_string("config", "fine:cpu", "Config NAME[:ARG] or path.")
    flags.DEFINE_integer("batch", 2, "Batch size.")
    flags.DEFINE_integer("steps", 2, "Profiled steps (after two untimed ones).")
    flags.DEFINE_integer("top", 25, "Rows of the table.")
    flags.DEFINE_string("output", "", "JSON file for the rows.")


def op_parts(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> model part ("dec0/block0/conv backward", "loss", ...)."""
    parts = {}
    pattern = r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{op_name=\"([^\"]+)\""
    for name, op_name in re.findall(pattern, hlo_text, re.M):
        parts[name] = model_part(op_name)
    return parts


_MODULE = re.compile(r"(enc|dec|up)\d+|bottleneck|head|block\d+|conv|norm")


def model_part(op_name: str) -> str:
    """``jit(train_step)/transpose(jvp(UNet3D))/dec0/block0/conv/...`` -> part and direction."""
    direction = "backward" if "transpose(" in op_name else "forward"
    path = re.sub(r"\b(jit|jvp|transpose|vmap)\(", "", op_name).replace(")", "")
    pieces = [p for p in path.split("/") if p and p != "train_step"]
    for scope in ("loss", "optimizer", "noise"):
        if scope in pieces:
            return scope if scope != "loss" else f"loss {direction}"
    if pieces and pieces[0] == "UNet3D":
        module = []
        for piece in pieces[1:4]:
            if not _MODULE.fullmatch(piece):
                break
            module.append(piece)
        # Operations outside any submodule: the pooling (a reshape and a maximum).
        return f"{'/'.join(module) or 'pooling and other UNet3D'} {direction}"
    return f"other: {pieces[0] if pieces else '?'}"


def trace_events(trace_dir: Path) -> list[dict]:
    """The complete ("X") events of the perfetto trace jax.profiler wrote under ``trace_dir``."""
    (path,) = list(trace_dir.glob("**/*perfetto_trace.json.gz"))
    events = json.loads(gzip.decompress(path.read_bytes()))
    events = events["traceEvents"] if isinstance(events, dict) else events
    return [e for e in events if e.get("ph") == "X"]


def profile(config: ml_collections.ConfigDict, batch_size: int, steps: int) -> dict:
    """Per-part milliseconds per step, the measured step time and the device."""
    compiled, _, run_step = common.compile_train_step(config, batch_size)
    parts = op_parts(compiled.as_text())
    run_step(2)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            run_step(steps)
        wall_s = (time.perf_counter() - start) / steps
        events = trace_events(Path(tmp))
    ms = collections.Counter()
    for e in events:
        if not e["name"].startswith(_RUNTIME_EVENTS):
            ms[parts.get(e["name"], UNKNOWN)] += e.get("dur", 0) / 1000 / steps
    return {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "batch": batch_size,
        "dtype": config.model.dtype,
        "input_shape": list(config.data.input_shape),
        "step_s_profiled": wall_s,
        "ops_ms_total": sum(ms.values()),
        "parts_ms": dict(ms.most_common()),
    }


def kind(part: str) -> str:
    """``dec0/block1/conv backward`` -> ``conv backward``; ``up2 forward`` -> ``up-conv forward``."""
    name, direction = part, ""
    if part.endswith((" forward", " backward")):
        name, direction = part.rsplit(" ", 1)
    last = name.split("/")[-1]
    if re.fullmatch(r"up\d+", last):
        last = "up-conv"
    elif re.fullmatch(r"block\d+", last):
        last = "relu"  # the blocks' own operations: the ReLU and its gradient
    return f"{last} {direction}".strip()


def markdown(result: dict, top: int) -> str:
    """Time by kind of operation, then the ``top`` most expensive parts, with shares."""
    total = result["ops_ms_total"]
    by_kind = collections.Counter()
    for part, ms in result["parts_ms"].items():
        by_kind[kind(part)] += ms
    lines = [
        f"Train step on {result['backend']} ({result['device']}), batch {result['batch']}, "
        f"{result['dtype']}, input {'x'.join(map(str, result['input_shape']))}: "
        f"{1000 * result['step_s_profiled']:.0f} ms per step under the profiler, "
        f"{total:.0f} ms in traced operations (summed over threads).",
        "",
        "| kind | ms per step | share |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {ms:.1f} | {ms / total:.1%} |" for k, ms in by_kind.most_common()]
    lines += ["", "| part | ms per step | share |", "|---|---|---|"]
    for part, ms in list(result["parts_ms"].items())[:top]:
        lines.append(f"| {part} | {ms:.1f} | {ms / total:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    config = config_lib.load_config(FLAGS.config, _OVERRIDES)
    result = {"config": FLAGS.config, **profile(config, FLAGS.batch, FLAGS.steps)}
    print(markdown(result, FLAGS.top))
    if FLAGS.output:
        Path(FLAGS.output).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=config_lib.absl_flags_parser(_OVERRIDES))
