"""What a new user has: a clone of the working tree and the venvs its install commands build.

Nothing here reuses the test venv. `make run` in a copy of the tree builds that copy's own
`.venv` with the Makefile's own pip command (runtime and `embedded` extras only), and a
second venv installs the project as a wheel would (non-editable), so a module or data file
missing from the package fails there. pip's cache is the only thing shared with the test
venv.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 900  # a hang guard: with pip's cache warm an install takes under a minute
# Variables of the test run that a user's shell would not have.
NOT_A_USERS = {"KAFKA_BROKER", "EMBEDDED_BROKER", "API_TOKEN", "MAKEFLAGS", "MFLAGS",
               "MAKELEVEL", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS",
               "PYTEST_CURRENT_TEST"}


def user_env() -> dict[str, str]:
    """A user's shell: none of orderstream's settings, no venv on PATH, no outer make."""
    ours = {name.upper() for name in Settings.model_fields}
    test_venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and p != test_venv_bin)
    env = {k: v for k, v in os.environ.items() if k not in NOT_A_USERS | ours}
    env["PATH"] = path or "/usr/local/bin:/usr/bin:/bin"
    return env


def copy_working_tree(dest: Path) -> Path:
    """The tracked and new (not ignored) files of the working tree, as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def run(command: list[str], cwd: Path, env: dict[str, str],
        timeout_s: float = INSTALL_TIMEOUT_S) -> str:
    """Run a command; its output, or a failure showing the end of it."""
    result = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=timeout_s)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n" \
                                   f"{output[-4000:]}"
    return output


def make_run_venv(checkout: Path) -> Path:
    """The venv `make run` builds in a checkout (the Makefile's prerequisite of `run`)."""
    run(["make", "-s", ".venv/.installed-embedded"], checkout, user_env())
    return checkout / ".venv"


def wheel_venv(checkout: Path, venv: Path) -> Path:
    """A venv with the project installed non-editable, as `pip install '.[embedded]'`."""
    env = user_env()
    python = shutil.which("python3", path=env["PATH"])
    assert python, "no python3 on PATH: a new user's `make run` would not find one either"
    run([python, "-m", "venv", str(venv)], checkout, env)
    run([str(venv / "bin" / "pip"), "install", "-q", "--upgrade", "pip"], checkout, env)
    run([str(venv / "bin" / "pip"), "install", "-q", ".[embedded]"], checkout, env)
    return venv
