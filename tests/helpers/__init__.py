"""Scripts the tests run in subprocesses, and where things are."""

from pathlib import Path

HELPERS = Path(__file__).resolve().parent
ROOT = HELPERS.parents[1]  # the project
# Real MRI samples, used from the shared folder beside the project (never copied into it).
REAL_DATA = ROOT.parent / "shared" / "data" / "real"
