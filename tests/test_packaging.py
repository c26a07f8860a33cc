"""Set-up a newcomer can trust: dependency lists in step, CLI help everywhere, CI runs the README's command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from typer.testing import CliRunner

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from drkd_viz.cli import app

REPO = Path(__file__).resolve().parents[1]

CONDA_TO_PIP = {"pytorch": "torch"}


def _pip_requirements() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    return {r.name.lower(): str(r.specifier) for r in reqs}


def _conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    found: dict[str, str] = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item.startswith("-e") or item in ("pip",) or item.startswith("python"):
                continue
            req = Requirement(item)
            found[CONDA_TO_PIP.get(req.name.lower(), req.name.lower())] = str(req.specifier)
    return found


def test_environment_yml_matches_pyproject():
    pip, conda = _pip_requirements(), _conda_requirements()
    assert set(pip) == set(conda), (
        f"only in pyproject: {set(pip) - set(conda)}; only in environment.yml: {set(conda) - set(pip)}"
    )
    for name in pip:
        assert pip[name] == conda[name], f"{name}: pyproject says {pip[name]!r}, environment.yml {conda[name]!r}"


def test_python_floor_is_the_same():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert project["requires-python"] == ">=3.10" and "python>=3.10" in env["dependencies"]


def test_torch_pins_admit_the_tested_release_and_nothing_newer():
    pip = _pip_requirements()
    from packaging.specifiers import SpecifierSet

    assert "2.14.1" in SpecifierSet(pip["torch"]) and "2.15.0" not in SpecifierSet(pip["torch"])
    assert "0.29.1" in SpecifierSet(pip["torchvision"]) and "0.30.0" not in SpecifierSet(pip["torchvision"])


def _verbs() -> list[str]:
    import typer.main

    return sorted(typer.main.get_command(app).commands)


def test_every_verb_has_help():
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    verbs = _verbs()
    assert {"data", "eval", "demo", "check-data", "models"} <= set(verbs)
    for verb in verbs:
        result = runner.invoke(app, [verb, "--help"])
        assert result.exit_code == 0, verb
        assert verb in top.output
        assert "Usage:" in result.output and len(result.output) > 200


def test_readme_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", section, flags=re.S)
    commands = [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert commands == ["make demo", "make test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)


@pytest.mark.parametrize("module", ["drkd_viz", "drkd_viz.data.coco", "drkd_viz.evaluation", "drkd_viz.models.factory"])
def test_public_modules_import(module):
    __import__(module)
