"""Pipeline presets read from YAML: the shipped ones, a user's own file, and clear errors for bad ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from drkd_viz.distill.config import ABLATIONS, CONTROLS, PAPER_TERM_WEIGHTS
from drkd_viz.experiments.pipeline import plan
from drkd_viz.experiments.presets import PRESETS, load_preset
from drkd_viz.resources import configs_dir
from drkd_viz.utils.typed_config import ConfigError

PRESET_FOLDER = configs_dir() / "presets"


def test_shipped_presets_are_the_yaml_files():
    assert set(PRESETS) == {"quick", "demo", "study"} == {p.stem for p in PRESET_FOLDER.glob("*.yaml")}
    study = PRESETS["study"]
    assert set(study.methods) >= {"baseline", "feature_imitation", "pkd", *ABLATIONS, *CONTROLS}
    assert len(study.seeds) >= 5 and Path(study.val_record).is_file()
    assert PRESETS["quick"].distill == PAPER_TERM_WEIGHTS  # the fast mode meets the paper's modules
    assert PRESETS["demo"].base == str((configs_dir() / "demo").resolve())


def test_a_copied_preset_file_plans_the_same_runs(tmp_path):
    for name in ("quick", "study"):
        copy = tmp_path / "mine" / f"{name}.yaml"
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(PRESET_FOLDER / f"{name}.yaml", copy)
        (tmp_path / "mine" / "demo").mkdir(exist_ok=True)  # a base beside the file wins over configs/
        for f in (configs_dir() / "demo").iterdir():
            shutil.copy(f, tmp_path / "mine" / "demo" / f.name)
        mine = load_preset(copy)
        ours = [(j.name, j.key) for j in plan(PRESETS[name], tmp_path / "runs")]
        assert [(j.name, j.key) for j in plan(mine, tmp_path / "runs")] == ours
    assert load_preset(tmp_path / "mine" / "study.yaml").base == str((tmp_path / "mine" / "demo").resolve())


def _preset(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((PRESET_FOLDER / "quick.yaml").read_text())
    raw = {k: v for k, v in raw.items() if not k.startswith("x-")}
    raw.update(changes)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seed": [0]}, "unknown key 'seed' (did you mean 'seeds'?)"),
        ({"seeds": "zero"}, "seeds"),
        ({"seeds": []}, "seeds is empty"),
        ({"methods": ["baseline", "drkd2"]}, "unknown method 'drkd2'"),
        ({"base": "no_such_folder"}, "no folder 'no_such_folder'"),
        ({"val_record": "nothing.json"}, "no file 'nothing.json'"),
        ({"parallel_jobs": 0}, "parallel_jobs must be >= 1"),
        ({"student": {"model": {"backbone": "resnet10", "fpn_chanels": 32}}}, "fpn_chanels"),
    ],
)
def test_a_bad_preset_says_what_is_wrong(tmp_path, changes, message):
    with pytest.raises(ConfigError) as caught:
        load_preset(_preset(tmp_path, **changes))
    assert message in str(caught.value)


def test_a_preset_path_that_is_no_preset_file(tmp_path):
    for path, message in (
        (tmp_path / "missing.yaml", "preset file not found"),
        (tmp_path, "is a folder"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_preset(path)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "broken.yaml").write_text("seeds: [0\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_preset(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_preset(tmp_path / "broken.yaml")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "partial.yaml").write_text("dataset: quick\nfamily: faster_rcnn\n")
    with pytest.raises(ConfigError, match="is empty; a preset sets at least dataset, family"):
        load_preset(tmp_path / "empty.yaml")
    with pytest.raises(ConfigError, match="teacher"):
        load_preset(tmp_path / "partial.yaml")
