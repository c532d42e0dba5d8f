"""Feeds randomly corrupted NIfTI and MHA files to the readers; prints one JSON summary line.

  python tests/helpers/fuzz_readers.py CASES SEED FOLDER

Runs in its own process so that a crash (segfault, abort) or a hang inside ITK fails the
calling test instead of taking pytest down. Each case is announced on stderr before it is
read, so the last line there names the case that crashed or hung.

Every read must either return a volume or raise ``io.ImageReadError`` / ``ValueError`` whose
message names the file; anything else is recorded as a failure.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lumbar_jax.data import io


def _seed_files(folder: Path) -> dict[str, bytes]:
    """Small valid images in each format: {suffix: bytes}."""
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.integers(0, 1000, (6, 10, 8)).astype(np.int16))
    image.SetSpacing((0.7, 0.8, 4.0))
    image.SetOrigin((1.0, -2.0, 3.0))
    seeds = {}
    for suffix in (".nii", ".nii.gz", ".mha"):
        path = folder / f"seed{suffix}"
        sitk.WriteImage(image, str(path), useCompression=suffix != ".nii")
        seeds[suffix] = path.read_bytes()
    return seeds


def _header_length(suffix: str, data: bytes) -> int:
    if suffix == ".mha":
        end = data.find(b"ElementDataFile")
        return data.find(b"\n", end) + 1 if end >= 0 else 256
    return 352  # NIfTI-1 header and extension flag


def corrupt(suffix: str, data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random corruption of ``data``: (description, corrupted bytes)."""
    kind = rng.choice(["truncate", "flip", "header", "garble_header_text", "zero", "append"])
    raw = bytearray(gzip.decompress(data) if suffix == ".nii.gz" else data)
    if kind == "truncate":
        cut = int(rng.integers(0, len(data)))
        return f"truncate to {cut} bytes", data[:cut]
    if kind == "flip":
        # Flipped bits anywhere in the uncompressed bytes (then recompressed).
        n = int(rng.integers(1, 16))
        for pos in rng.integers(0, len(raw), n):
            raw[pos] ^= 1 << int(rng.integers(0, 8))
        what = f"flip {n} bits"
    elif kind == "header":
        # Random bytes over part of the header: dimensions, datatype, offsets, magic.
        head = _header_length(suffix, bytes(raw))
        start = int(rng.integers(0, head))
        length = int(rng.integers(1, 24))
        raw[start : start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        what = f"random header bytes {start}..{start + length}"
    elif kind == "garble_header_text":
        if suffix == ".mha":
            # Plausible but wrong header values: huge, negative or absurd sizes and types.
            text = bytes(raw)
            value = rng.choice(
                [b"-3", b"0", b"99999999 99999 9999", b"1e308", b"nan", b"MET_FOO", b"", b"4 4"]
            )
            key = rng.choice([b"DimSize", b"NDims", b"ElementType", b"ElementSpacing", b"Offset"])
            start = text.find(key + b" = ")
            end = text.find(b"\n", start)
            if start >= 0:
                raw = bytearray(text[:start] + key + b" = " + value + text[end:])
            what = f"header {key.decode()} = {value.decode()}"
        else:
            # NIfTI dim[] (int16 at offset 40) and datatype/bitpix (offsets 70, 72).
            offset = int(rng.choice([40, 42, 44, 46, 48, 70, 72, 108]))
            value = int(rng.choice([-1, 0, 7, 255, 32767, -32768]))
            raw[offset : offset + 2] = np.int16(value).tobytes()
            what = f"int16 {value} at header offset {offset}"
    elif kind == "zero":
        start = int(rng.integers(0, len(raw)))
        raw[start:] = bytes(len(raw) - start)
        what = f"zeros from byte {start}"
    else:
        raw += rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        what = "trailing garbage"
    out = gzip.compress(bytes(raw)) if suffix == ".nii.gz" else bytes(raw)
    return what, out


def main() -> None:
    cases, seed, folder = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    folder.mkdir(parents=True, exist_ok=True)
    seeds = _seed_files(folder)
    rng = np.random.default_rng(seed)
    counts = {"read": 0, "clear_error": 0}
    failures = []
    start = time.perf_counter()
    for i in range(cases):
        suffix = list(seeds)[i % len(seeds)]
        what, data = corrupt(suffix, seeds[suffix], rng)
        path = folder / f"case{i:04d}{suffix}"
        path.write_bytes(data)
        print(f"case {i}: {path.name}: {what}", file=sys.stderr, flush=True)
        reader = io.read_canonical if i % 2 else io.read_image
        try:
            reader(path)
            counts["read"] += 1
        except ValueError as e:  # io.ImageReadError is a ValueError
            if str(path) not in str(e):
                failures.append(f"{path.name} ({what}): message does not name the file: {e}")
            counts["clear_error"] += 1
        except Exception as e:
            failures.append(f"{path.name} ({what}): {type(e).__name__}: {e}")
        path.unlink()
    summary = {**counts, "failures": failures, "seconds": time.perf_counter() - start}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
