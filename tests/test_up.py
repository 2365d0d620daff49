"""up.py: the launcher's .venv is created, kept when usable and recreated when broken."""

from __future__ import annotations

import venv

import up


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
