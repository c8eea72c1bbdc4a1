"""The demo's "Next, try" commands name the command line the way it can be called from the user's shell."""

import os
import sys
from pathlib import Path

import pytest

from efficientdet.demo import cli_command

ENTRY_POINT = Path(sys.executable).with_name("efficientdet")


@pytest.mark.skipif(not ENTRY_POINT.is_file(), reason="the package is not installed with its entry point")
def test_cli_command_is_the_entry_point_path_unless_the_environment_is_active(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", os.pathsep.join([str(ENTRY_POINT.parent), os.environ.get("PATH", "")]))
    assert cli_command() == "efficientdet"  # activated: the name on PATH is this environment's
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(ENTRY_POINT.parent.parent.parent)  # the folder holding the environment, e.g. the clone
    assert cli_command() == os.path.join(ENTRY_POINT.parent.parent.name, "bin", "efficientdet")
    monkeypatch.chdir(tmp_path)  # elsewhere: the absolute path
    assert cli_command() == str(ENTRY_POINT)
