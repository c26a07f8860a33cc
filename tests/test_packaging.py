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

CONDA_TO_PIP = {"pytorch": "torch", "python-build": "build"}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _pip_requirements() -> dict[str, str]:
    """The core and every extra (an extra naming the package itself, as dev does, adds nothing new)."""
    project = _project()["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    reqs = [Requirement(r) for r in project["dependencies"] + extras]
    return {r.name.lower(): str(r.specifier) for r in reqs if r.name.lower() != "drkd_viz"}


def _conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    found: dict[str, str] = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item.startswith("-e") or item == "pip":
                continue
            req = Requirement(item)
            if req.name == "python":
                continue
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


def test_floors_admit_the_tested_set_and_no_caps():
    """pyproject.toml sets floors only; constraints.txt pins the tested set, and the floors admit it."""
    from packaging.specifiers import SpecifierSet

    pip = _pip_requirements()
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pins[req.name.lower()] = next(iter(req.specifier)).version
    assert pins == {"torch": "2.14.1", "torchvision": "0.29.1"}
    for name, version in pins.items():
        assert version in SpecifierSet(pip[name]), name
    # torch.amp.GradScaler("cuda") needs torch 2.3; st.download_button(on_click="ignore") Streamlit 1.45
    assert pip["torch"] == ">=2.3" and pip["torchvision"] == ">=0.18" and pip["streamlit"] == ">=1.45"
    capped = {name: spec for name, spec in pip.items() if "<" in spec or "==" in spec}
    assert not capped, f"upper caps that guard against nothing known: {capped}"
    makefile = (REPO / "Makefile").read_text() + (REPO / "scripts" / "setup.sh").read_text()
    assert "-c constraints.txt" in makefile


def test_core_install_is_lean():
    """The core holds what the library and the CLI need; the faces and the test tools are extras."""
    project = _project()["project"]
    core = {Requirement(r).name.lower() for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not core & {"streamlit", "jupyterlab", "ipywidgets", "tensorboard", "pytest", "playwright", "onnx"}
    assert {Requirement(r).name for r in extras["app"]} == {"streamlit", "altair"}
    assert {Requirement(r).name for r in extras["notebooks"]} == {
        *("jupyterlab", "ipywidgets", "altair"),
        *("anywidget", "vl-convert-python"),  # Altair in JupyterLab offline
    }
    assert "drkd_viz[app,notebooks,tensorboard,onnx]" in extras["dev"]
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert 'demo) EXTRAS="app,notebooks"' in setup and 'test) EXTRAS="dev"' in setup
    makefile = (REPO / "Makefile").read_text()
    assert "\ndemo: setup-demo\n" in makefile and "\ntest: setup\n" in makefile


def test_every_subpackage_is_in_the_wheel_list():
    """pyproject.toml lists the packages explicitly (it maps app/ and configs/ into the wheel): a new
    subpackage must be added there, or the wheel would silently lack it."""
    listed = set(_project()["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(REPO).parts)
        for path in (REPO / "drkd_viz").rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    assert found <= listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"


def test_no_file_reaches_outside_the_repository():
    """The repository is enough: no tracked text file refers to the development machine's shared
    side folder, so a clone with nothing beside it works."""
    import subprocess

    files = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True).stdout.split()
    needles = ("../" + "shared", "parent / " + '"shared"', "DRKD_" + "SHARED")  # built here: not found in this file
    offenders = []
    for name in files:
        path = REPO / name
        if path.suffix in {".jpg", ".png", ".safetensors"} or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        if any(needle in text for needle in needles):
            offenders.append(name)
    assert not offenders, offenders


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


# Names of things inside a run folder or a runs folder, as quoted literals; only drkd_viz/runs/ may spell them
RUN_PATH_LITERAL = re.compile(
    r"""(?<![\[{])["'](config\.yaml|metrics\.jsonl|metrics\.json|pipeline\.json|detections\.json|student\.json|"""
    r"""student\.safetensors|build_student\.py|checkpoints|export|eval|reports|variants|\.stale|tensorboard)["']"""
)


def test_only_the_runs_package_spells_run_folder_paths():
    """The on-disk contract lives in drkd_viz/runs/: elsewhere, code asks a RunFolder or a RunsRoot where things
    are (a JSON key in brackets, a CLI verb's name and text inside a longer string do not count)."""
    offenders = []
    for folder in ("drkd_viz", "app", "bench", "scripts"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.is_relative_to(REPO / "drkd_viz" / "runs"):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if RUN_PATH_LITERAL.search(line) and "command(" not in line and "load_file(" not in line:
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
