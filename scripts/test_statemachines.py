"""scripts/statemachines.py --check passes on the project and catches a definition edited by hand.

Run: .venv-tools/bin/python -m pytest scripts/test_statemachines.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import statemachines  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "statemachine", tmp_path / "statemachine")
    return tmp_path


def test_the_checked_in_definitions_are_what_the_script_writes(project: Path) -> None:
    assert statemachines.main(["--check", "--root", str(project)]) == 0


def test_a_definition_edited_by_hand_is_caught(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project / "statemachine" / "provision.asl.json"
    definition = json.loads(path.read_text())
    definition["States"]["InspectDatabase"]["Retry"][0]["MaxAttempts"] = 3
    path.write_text(json.dumps(definition, indent=2) + "\n")

    assert statemachines.main(["--check", "--root", str(project)]) == 1
    assert "statemachine/provision.asl.json is not what scripts/statemachines.py writes" in capsys.readouterr().err


def test_writing_makes_the_check_pass_again(project: Path) -> None:
    (project / "statemachine" / "provision.asl.json").write_text("{}\n")
    assert statemachines.main(["--root", str(project)]) == 0
    assert statemachines.main(["--check", "--root", str(project)]) == 0
