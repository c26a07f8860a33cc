"""The teaching notebooks execute headless in fast mode (DRKD_FAST=1, the quick runs), their widgets work
when driven on the kernel side, and they are committed with outputs stripped."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

# cells appended to a notebook before it runs: they drive its widgets like a person would and check
# that the outputs change (they run in the same kernel, after the notebook's own cells)
WIDGET_CHECKS: dict[str, list[str]] = {
    "02_pixel_relations": [
        """
first = dict(last["contrast"])
maps_viewer.children[0].value = 1  # another test image
maps_viewer.children[1].value = "P3"  # another level
assert last["index"] == 1 and last["level"] == "P3", last
assert last["contrast"] != first
graph_viewer.children[3].value = 2  # another graph node
assert views["current"].nodes >= 3
# the global relation of a pixel: another cell redraws every model's affinity row
before = {r: a.copy() for r, a in affinity_last["maps"].affinity.items()}
affinity_viewer.children[2].value = 3
affinity_viewer.children[3].value = 5
assert affinity_last["cell"] == (3, 5), affinity_last["cell"]
maps = affinity_last["maps"]
index = 3 * maps.grid[1] + 5
assert set(maps.affinity) >= {"teacher", "baseline", "drkd"}
assert all(abs(a[index, index] - 1) < 1e-4 for a in maps.affinity.values())
affinity_viewer.children[1].value = "P4"
assert affinity_last["level"] == "P4" and affinity_last["maps"].grid == maps.grid
"""
    ],
    "03_instance_relations": [
        """
relations_viewer.children[3].value = 1  # select instance 1: its row is extracted for every model
assert picked["instance"] == 1 and picked["relation"] == "anchored", picked
assert set(picked["rows"]) >= {"teacher", "baseline", "drkd"}, picked
assert all(abs(row.sum() - 1) < 1e-4 for row in picked["rows"].values())
anchored = picked["rows"]["teacher"]
relations_viewer.children[2].value = "learned"  # the quick runs train the paper's relation modules
assert picked["relation"] == "learned" and not (abs(picked["rows"]["teacher"] - anchored) < 1e-6).all()
# the parameter-free relation metrics: an AUC for every model, agreement for the students only
assert set(relation_numbers.auc["role"]) == set(models.roles)
assert "teacher" not in set(relation_numbers.agreement["role"]) and relation_numbers.images > 0
assert relation_numbers.auc["auc"].between(0, 1).all()
"""
    ],
    "05_attribution": [
        """
attribution_viewer.children[1].value = 1  # another object
attribution_viewer.children[2].value = ("gradcam",)
assert chosen["instance"] == 1 and chosen["methods"] == ("gradcam",), chosen
assert set(chosen["scores"]) == {"teacher", "baseline", "drkd"}
assert all(0.0 <= s <= 1.0 for s in chosen["scores"].values())
"""
    ],
    "06_errors": [
        """
images_viewer.children[1].value = "worse"  # the images where the student does worse than the baseline
images_viewer.children[0].value = "all"
assert last["direction"] == "worse" and last["size"] == "all", last
assert last["ranked"] >= len(last["images"]), last
assert set(table["error"]) == {*de.ERROR_TYPES, *de.SPECIAL_TYPES}
"""
    ],
    "04_ablations": [
        """
panel.refresh()  # the notebook trained a variant outside the panel since it was drawn
before = len(panel.table)
panel.controls["use_ira"].value = False  # DRKD without its instance relation
panel.controls["use_ir"].value = True  # with the paper's L_IR, unfiltered
panel.controls["relation_filter"].value = "none"
panel.controls["iterations"].value = 3
panel.button.click()  # trains the variant: one more row in the comparison
formula = panel.last["formula"]
import re
assert "L_IRA" not in formula and "L_PA" in formula and "L_FI" in formula and re.search(r"·L_IR\\b", formula), formula
assert len(panel.table) == before + 1, panel.table
assert panel.table["run"].str.contains(panel.last["folder"].name).any()
again = panel.train()  # the same variant again: reused, nothing added
assert again["cached"] and len(panel.table) == before + 1
"""
    ],
}


@pytest.fixture(scope="module")
def notebook_runs(quick_runs, tmp_path_factory) -> Path:
    """A private copy of the quick runs (notebooks train variants into it); the notebooks get it as
    $DRKD_RUNS, the runs folder they use instead of runs/<preset>."""
    root = tmp_path_factory.mktemp("notebook-runs") / "quick"
    shutil.copytree(quick_runs, root, symlinks=True)
    return root


def artifacts_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DRKD_TEST_ARTIFACTS", tmp_path)) / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def execute(path: Path, runs: Path, extra_cells: list[str]) -> nbformat.NotebookNode:
    from helpers import polling_notebook_client

    nb = nbformat.read(path, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(src.strip()) for src in extra_cells]
    env_backup = dict(os.environ)
    # the kernel inherits this process's environment; importing streamlit elsewhere in the session sets
    # MPLBACKEND=Agg, which would make the notebooks' figures vanish
    os.environ.update({"DRKD_FAST": "1", "DRKD_RUNS": str(runs), "OMP_NUM_THREADS": "2"})
    os.environ.pop("MPLBACKEND", None)
    try:
        client = polling_notebook_client()(
            nb,
            timeout=600,
            kernel_name="python3",
            store_widget_state=True,
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path, notebook_runs, tmp_path):
    nb = execute(path, notebook_runs, WIDGET_CHECKS.get(path.stem, []))
    images = 0
    out = artifacts_dir(tmp_path)
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"cell {i}: {output.get('ename')}: {output.get('evalue')}"
            png = output.get("data", {}).get("image/png")
            if png:
                images += 1
                (out / f"{path.stem}-cell{i:02d}-{images}.png").write_bytes(base64.b64decode(png))
    assert images >= 1, f"{path.name} drew no figure"


def test_notebooks_are_committed_without_outputs():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs: strip them"


def test_fast_mode_is_the_first_code_cell():
    for path in NOTEBOOKS:
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert "DRKD_FAST" in first.source, f"{path.name}: the parameters cell must read DRKD_FAST"
