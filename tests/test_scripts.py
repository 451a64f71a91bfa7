"""scripts/: the install script, run against stand-in apt-get, dpkg, sudo and python3."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

INSTALL = Path(__file__).resolve().parents[1] / "scripts" / "install.sh"


def fake_tools(folder: Path) -> Path:
    """Commands that log their arguments to calls.log; dpkg says no package is installed."""
    folder.mkdir()
    log = folder / "calls.log"
    scripts = {
        "dpkg": "exit 1",
        "apt-get": f'echo "apt-get $*" >> {log}',
        "sudo": 'exec "$@"',
        "python3": f'echo "python3 $*" >> {log}',
    }
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return log


def test_install_script_parses():
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)


def test_install_waits_for_the_dpkg_lock_instead_of_failing(tmp_path):
    log = fake_tools(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", str(INSTALL)], env=env, check=True, capture_output=True, timeout=60)
    apt = [line for line in log.read_text().splitlines() if line.startswith("apt-get")]
    assert any(" update " in line for line in apt)
    assert len(apt) == 2 and all("-o DPkg::Lock::Timeout=600" in line for line in apt), apt
    assert any(" install " in line for line in apt)
