"""``python -m lumbar_jax COMMAND``: one dispatcher, the same flag style and exits for all."""

import pytest

from lumbar_jax import cli
from tests.helpers.commands import run_command


@pytest.mark.slow
def test_dispatcher_lists_commands_and_refuses_unknown_ones():
    listing = run_command(timeout=60)
    assert listing.returncode == 0
    for name in cli.COMMANDS:
        assert f"  {name}" in listing.stdout
    unknown = run_command("fly", timeout=60)
    assert unknown.returncode == 2 and "usage: lumbar-jax COMMAND" in unknown.stdout


@pytest.mark.slow
def test_missing_flags_and_user_errors_exit_cleanly(tmp_path):
    usage = run_command("predict", f"--output={tmp_path}", timeout=60)
    assert usage.returncode == 1
    assert "--coarse and --fine required" in usage.stderr
    error = run_command("score", f"--workdir={tmp_path / 'none'}", f"--data={tmp_path}", timeout=60)
    assert error.returncode == 1
    assert error.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in error.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_starts_and_lists_its_flags(name):
    result = run_command(name, "--helpshort", timeout=120)  # absl exits 1 after help
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"lumbar_jax.cli.{name}:" in result.stdout  # the command's own flags
    assert f"python -m lumbar_jax {name}" in result.stdout  # and its usage
