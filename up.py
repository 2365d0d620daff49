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

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed-setup-cfg"
TORCH_REQUIREMENT = "torch==2.13.0"


def install() -> None:
    if sys.version_info < (3, 11):
        raise SystemExit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        print(f"creating {VENV}")
        venv.create(VENV, with_pip=True)
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
    install()
    os.chdir(ROOT)
    os.execv(str(PYTHON), [str(PYTHON), "-m", "server.launch", *sys.argv[1:]])


if __name__ == "__main__":
    main()
