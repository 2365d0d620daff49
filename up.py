#!/usr/bin/env python3
"""Install the platform into .venv and bring it up with its demo: `python3 up.py`.

Needs only Python 3.11+. The first run creates .venv and installs the dependencies (PyTorch
first, pinned, so that no resolver pulls another build; TORCH_INDEX_URL names the index to take
it from, such as PyTorch's CPU wheel index); later runs reuse them while
setup.cfg is unchanged. Arguments are passed on to `python -m server.launch` (try --help).
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

from server.launch_arguments import build_parser

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed-setup-cfg"
TORCH_REQUIREMENT = "torch==2.13.0"


def venv_is_usable(venv_dir: Path) -> bool:
    """Tell whether the venv's python runs and imports pip.

    An interrupted creation can leave the directory without python, or with python but
    without pip, and every later install would fail on it.
    """
    python = venv_dir / "bin" / "python"
    if not python.exists():
        return False
    try:
        result = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def prepare_venv(venv_dir: Path) -> None:
    """Create the venv, or recreate it when it exists but is unusable.

    ensurepip installs pip from the wheel bundled with Python, so this needs no network.
    Recreating also removes the install stamp, so the dependencies are installed again.
    """
    if not venv_dir.exists():
        print(f"creating {venv_dir}")
    elif venv_is_usable(venv_dir):
        return
    else:
        print(f"{venv_dir} has no working python or pip, as an interrupted creation leaves it; recreating it")
    venv.create(venv_dir, with_pip=True, clear=True)


def install() -> None:
    if sys.version_info < (3, 11):
        raise SystemExit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}.")
    prepare_venv(VENV)
    fingerprint = hashlib.sha256((ROOT / "setup.cfg").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check"]
    # pip takes torch from its configured index. Where that index serves a CUDA build, point
    # TORCH_INDEX_URL at PyTorch's CPU wheel index.
    torch_index = ["--index-url", os.environ["TORCH_INDEX_URL"]] if os.environ.get("TORCH_INDEX_URL") else []
    print(f"installing {TORCH_REQUIREMENT} before the rest, so no resolver picks another torch")
    subprocess.run(pip + torch_index + [TORCH_REQUIREMENT], check=True)
    print("installing the platform and its dependencies")
    subprocess.run(pip + ["-e", str(ROOT)], check=True)
    STAMP.write_text(fingerprint)


def main() -> None:
    # Parsed before installing, so that --help and a bad option need no .venv. The options
    # themselves are passed on unchanged.
    build_parser(prog="up.py").parse_args()
    install()
    os.chdir(ROOT)
    os.execv(str(PYTHON), [str(PYTHON), "-m", "server.launch", *sys.argv[1:]])


if __name__ == "__main__":
    main()
