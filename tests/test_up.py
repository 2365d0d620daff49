"""up.py: the launcher's .venv is created, kept when usable and recreated when broken, and options are parsed first."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv

import pytest

import up
from tests.conftest import ROOT


def test_venv_without_pip_is_recreated(tmp_path, capsys):
    # Regression: a creation interrupted before ensurepip left .venv with python but no pip, and
    # every later run of up.py failed on `python -m pip install`.
    venv_dir = tmp_path / ".venv"
    venv.create(venv_dir, with_pip=False)
    assert not up.venv_is_usable(venv_dir)
    up.prepare_venv(venv_dir)
    assert up.venv_is_usable(venv_dir)
    assert "recreating" in capsys.readouterr().out


def test_venv_without_python_is_recreated(tmp_path, capsys):
    venv_dir = tmp_path / ".venv"
    (venv_dir / "bin").mkdir(parents=True)
    assert not up.venv_is_usable(venv_dir)
    up.prepare_venv(venv_dir)
    assert up.venv_is_usable(venv_dir)
    assert "recreating" in capsys.readouterr().out


def test_venv_with_broken_python_link_is_recreated(tmp_path):
    venv_dir = tmp_path / ".venv"
    (venv_dir / "bin").mkdir(parents=True)
    (venv_dir / "bin" / "python").symlink_to(tmp_path / "removed-python")
    up.prepare_venv(venv_dir)
    assert up.venv_is_usable(venv_dir)


def test_usable_venv_is_kept(tmp_path, capsys):
    venv_dir = tmp_path / ".venv"
    venv.create(venv_dir, with_pip=True)
    installed = venv_dir / ".installed-setup-cfg"
    installed.write_text("kept")
    up.prepare_venv(venv_dir)
    assert installed.read_text() == "kept"
    assert capsys.readouterr().out == ""


def copy_launcher(target) -> None:
    """Copy up.py and the modules it imports, so that a run cannot install into the worktree's .venv."""
    (target / "server").mkdir()
    shutil.copy(ROOT / "up.py", target / "up.py")
    shutil.copy(ROOT / "setup.cfg", target / "setup.cfg")
    for name in ("__init__.py", "launch_arguments.py"):
        shutil.copy(ROOT / "server" / name, target / "server" / name)


@pytest.mark.parametrize("argv, status, stream", [(["--help"], 0, "stdout"), (["--bogus"], 2, "stderr")])
def test_options_answered_before_install(tmp_path, argv, status, stream):
    # Regression: `python3 up.py --help` created .venv and installed torch before printing help.
    copy_launcher(tmp_path)

    result = subprocess.run([sys.executable, "up.py", *argv], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == status
    assert "--no-demo" in getattr(result, stream)
    assert not (tmp_path / ".venv").exists()
