"""The embedded dataset: determinism, size distribution, structure, datasheet."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drkd_viz.data.embedded import generate_dataset
from drkd_viz.data.statistics import dataset_statistics
from drkd_viz.data.synthetic import CLASSES, MIN_VISIBLE_FRACTION, PRESETS, SPLITS, draw_image, image_seed
from drkd_viz.errors import UserError


def test_same_seed_gives_byte_identical_annotations(quick_data, tmp_path):
    again = tmp_path / "again"
    generate_dataset(again, preset="quick", seed=0, workers=1, progress=False)  # other worker count
    for split in SPLITS:
        assert (quick_data / split / "annotations.json").read_bytes() == (
            again / split / "annotations.json"
        ).read_bytes()
    first = sorted((quick_data / "train" / "images").iterdir())[:5]
    for path in first:
        assert path.read_bytes() == (again / "train" / "images" / path.name).read_bytes()


def test_other_seed_gives_other_data():
    a = draw_image(np.random.default_rng(image_seed(0, "train", 3)), PRESETS["quick"])
    b = draw_image(np.random.default_rng(image_seed(1, "train", 3)), PRESETS["quick"])
    assert not np.array_equal(a.pixels, b.pixels)


def test_quick_preset_structure(quick_data):
    stats = json.loads((quick_data / "stats.json").read_text())
    assert len(stats["classes"]) >= 6 and stats["classes"] == list(CLASSES)
    for split, expected in PRESETS["quick"].split_sizes.items():
        coco = json.loads((quick_data / split / "annotations.json").read_text())
        assert len(coco["images"]) == expected == stats["splits"][split]["images"]
        assert len(list((quick_data / split / "images").iterdir())) == expected
        per_image = np.bincount([a["image_id"] for a in coco["annotations"]], minlength=expected + 1)[1:]
        assert per_image.min() >= 1 and per_image.max() <= 20
        sizes = {i["id"]: (i["width"], i["height"]) for i in coco["images"]}
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            width, height = sizes[ann["image_id"]]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width and y + h <= height
            assert 0 < ann["area"] <= w * h + 1e-6  # visible pixels fit in the tight box
            assert ann["visible_fraction"] >= MIN_VISIBLE_FRACTION  # heavily occluded objects are not drawn
    for name in ("datasheet.md", "size_histogram.png", "examples.png"):
        assert (quick_data / name).stat().st_size > 0


def test_datasheet_says_what_relations_mean(quick_data):
    text = (quick_data / "datasheet.md").read_text()
    assert "Relations carry information" in text and "share one style" in text
    for name in CLASSES:
        assert f"`{name}`" in text
    for split in SPLITS:
        assert f"| {split} |" in text


@pytest.mark.parametrize("preset", ["quick", "demo"])
def test_size_distribution_meets_coco_thresholds(preset, quick_data):
    """Rich in small objects by COCO's area thresholds, in every split: >= 40 % small, and enough medium
    objects to measure AP_M (>= 25 % at quick's 224-288 px, >= 20 % at demo's 160-192 px, where large
    objects hardly fit)."""
    if preset == "quick":
        coco = {s: json.loads((quick_data / s / "annotations.json").read_text()) for s in SPLITS}
    else:  # draw a deterministic sample of the demo preset without writing files
        from drkd_viz.data.synthetic import coco_dict

        coco = {}
        for split in SPLITS:
            records = []
            for i in range(120):
                drawn = draw_image(np.random.default_rng(image_seed(0, split, i)), PRESETS[preset])
                records.append(
                    {
                        "index": i,
                        "file_name": f"{i}.jpg",
                        "height": drawn.pixels.shape[0],
                        "width": drawn.pixels.shape[1],
                        "objects": [vars(o) for o in drawn.objects],
                    }
                )
            coco[split] = coco_dict(records, split, PRESETS[preset], 0)
    stats = dataset_statistics(coco)
    for split in SPLITS:
        fractions = stats["splits"][split]["size_fractions"]
        assert fractions["small"] >= 0.40, (split, fractions)
        assert fractions["medium"] >= (0.25 if preset == "quick" else 0.20), (split, fractions)


def test_instances_of_a_class_share_a_style_within_an_image():
    """Colour is informative inside an image: the mean colour of a medium/large instance is closer to
    its same-class siblings than to instances of other classes."""
    closer, total = 0, 0
    for i in range(40):
        drawn = draw_image(np.random.default_rng(image_seed(7, "train", i)), PRESETS["demo"])
        objs = [o for o in drawn.objects if o.area >= 400 and o.category not in ("ring",)]
        feats = []
        for o in objs:
            x, y, w, h = (int(v) for v in o.bbox)
            cx, cy = x + w // 2, y + h // 2
            feats.append(drawn.pixels[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(0))
        for a in range(len(objs)):
            same = [
                np.linalg.norm(feats[a] - feats[b])
                for b in range(len(objs))
                if b != a and objs[b].category == objs[a].category
            ]
            other = [
                np.linalg.norm(feats[a] - feats[b]) for b in range(len(objs)) if objs[b].category != objs[a].category
            ]
            if same and other:
                total += 1
                closer += min(same) < min(other)
    assert total > 30
    print(f"closest to a sibling: {closer}/{total}")
    assert closer / total > 0.7, f"only {closer}/{total} instances are closest to a sibling of their class"


def test_existing_other_dataset_is_not_overwritten(quick_data):
    with pytest.raises(UserError, match="does not hold the 'quick' dataset with seed 5"):
        generate_dataset(quick_data, preset="quick", seed=5, progress=False)


def test_unknown_preset_is_refused(tmp_path):
    with pytest.raises(UserError, match="unknown dataset preset 'huge'"):
        generate_dataset(tmp_path / "x", preset="huge")


def test_generation_is_cached(quick_data):
    """A second call finds the dataset and redraws nothing (no file is rewritten)."""
    files = sorted(p for p in quick_data.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    stats = generate_dataset(quick_data, preset="quick", seed=0, progress=False)
    assert stats["preset"] == "quick"
    assert sorted(p for p in quick_data.rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_a_dataset_from_an_older_generator_is_redrawn(tmp_path):
    import shutil

    from drkd_viz.data.synthetic import GENERATOR_VERSION

    root = tmp_path / "old"
    generate_dataset(root, preset="quick", seed=0, progress=False)
    stats = json.loads((root / "stats.json").read_text())
    stats["generator_version"] = GENERATOR_VERSION - 1
    stats["fingerprint"] = "stale"
    (root / "stats.json").write_text(json.dumps(stats))
    shutil.rmtree(root / "test")
    fresh = generate_dataset(root, preset="quick", seed=0, progress=False)
    assert fresh["generator_version"] == GENERATOR_VERSION and (root / "test" / "annotations.json").is_file()


def _drawn_coco(preset, split: str, count: int, seed: int = 0) -> dict:
    from drkd_viz.data.synthetic import coco_dict

    records = []
    for i in range(count):
        drawn = draw_image(np.random.default_rng(image_seed(seed, split, i)), preset)
        h, w = drawn.pixels.shape[:2]
        records.append(
            {"index": i, "file_name": f"{i}.jpg", "height": h, "width": w, "objects": [vars(o) for o in drawn.objects]}
        )
    return coco_dict(records, split, preset, seed)


@pytest.mark.parametrize("preset", ["quick", "demo"])
def test_no_instance_hides_inside_a_sibling_of_its_class(preset):
    """Instances of a class share one style within an image, so two that overlap have no visible boundary:
    version 4 drew small stars on a big star (its image 4). No same-class pair may overlap at all."""
    from drkd_viz.data.statistics import _overlap_too_much, same_class_overlaps

    coco = _drawn_coco(PRESETS[preset], "train", 150)
    assert same_class_overlaps(coco) == {"instances": 0, "fraction": 0.0, "images": 0}
    by_key: dict = {}
    for ann in coco["annotations"]:
        by_key.setdefault((ann["image_id"], ann["category_id"]), []).append(ann["bbox"])
    pairs = 0
    for boxes in by_key.values():
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                pairs += 1
                assert not _overlap_too_much(boxes[a], boxes[b], iou=0.0, inside=0.0), (boxes[a], boxes[b])
    assert pairs > 200  # siblings are common: the rule is exercised, not avoided


def test_the_overlap_check_catches_a_small_instance_drawn_on_a_big_one():
    from drkd_viz.data.statistics import same_class_overlaps

    coco = {
        "annotations": [
            {"image_id": 4, "category_id": 5, "bbox": [10, 10, 100, 100]},  # a big star
            {"image_id": 4, "category_id": 5, "bbox": [40, 40, 12, 12]},  # a small star on it
            {"image_id": 4, "category_id": 2, "bbox": [45, 45, 10, 10]},  # another class may overlap
        ]
    }
    assert same_class_overlaps(coco) == {"instances": 2, "fraction": round(2 / 3, 4), "images": 1}


def test_every_instance_has_a_visible_rim():
    """The rim is dark on a bright surround and light on a dark one."""
    from drkd_viz.data.shapes import outline_rim, render_alpha

    alpha = render_alpha("square", 20, 20, 0.0)
    fill = np.full((*alpha.shape, 3), 0.5, np.float32)
    bright, dark = np.ones_like(fill), np.zeros_like(fill)
    on_bright, on_dark = outline_rim(fill, alpha, bright, 1.0), outline_rim(fill, alpha, dark, 1.0)
    edge = (alpha > 0.9) & (np.roll(alpha, 1, axis=0) < 0.1)  # pixels just inside the top edge
    assert edge.any()
    assert on_bright[edge].mean() < 0.3 and on_dark[edge].mean() > 0.7
    centre = alpha.shape[0] // 2
    assert np.allclose(on_bright[centre, centre], 0.5)  # the inside keeps its fill


@pytest.mark.parametrize("preset", ["quick", "demo"])
def test_size_mix_is_small_object_rich_with_one_to_sixteen_objects(preset):
    """At least half the objects are small by COCO's area threshold on val and test, with 1..max objects
    per image and several objects of a class in most multi-object images (what relations need)."""
    spec = PRESETS[preset]
    for split in ("val", "test"):
        coco = _drawn_coco(spec, split, 120)
        stats = dataset_statistics({split: coco})["splits"][split]
        assert stats["size_fractions"]["small"] >= 0.5, stats["size_fractions"]
        assert stats["objects_per_image"]["min"] >= 1 and stats["objects_per_image"]["max"] <= spec.max_objects
        per_image: dict = {}
        for ann in coco["annotations"]:
            per_image.setdefault(ann["image_id"], []).append(ann["category_id"])
        crowded = [cats for cats in per_image.values() if len(cats) >= 4]
        with_siblings = sum(len(set(cats)) < len(cats) for cats in crowded)
        assert with_siblings / len(crowded) > 0.8


def test_calibration_variants_are_distinct_datasets(tmp_path):
    """A preset object (a calibration variant) gets its own fingerprint; the same settings, the same one."""
    from dataclasses import replace

    from drkd_viz.data.synthetic import fingerprint

    small = replace(PRESETS["quick"], split_sizes={"train": 3, "val": 2, "test": 2})
    no_clutter = replace(small, clutter=0.0)
    assert fingerprint(small, 0) != fingerprint(no_clutter, 0)
    assert fingerprint(small, 0) == fingerprint(replace(small), 0)
    stats = generate_dataset(tmp_path / "v", preset=no_clutter, seed=0, workers=1, progress=False)
    assert stats["generator_settings"]["clutter"] == 0.0 and stats["splits"]["val"]["images"] == 2
    assert "strength 0.6" in (tmp_path / "v" / "datasheet.md").read_text()


def test_every_calibration_variant_changes_one_knob_of_the_base():
    import importlib.util
    from dataclasses import replace
    from pathlib import Path

    from drkd_viz.data.synthetic import fingerprint

    path = Path(__file__).resolve().parents[1] / "scripts" / "calibrate_dataset.py"
    spec = importlib.util.spec_from_file_location("calibrate_dataset", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prints = set()
    for name, knob, _, changes in module.VARIANTS:
        variant = replace(module.BASE, **changes)
        assert (not changes) == (name == "base") and (knob in module.BASE_VALUE or name == "base")
        prints.add(fingerprint(variant, 0))
        draw_image(np.random.default_rng(image_seed(0, "val", 0)), variant)  # every variant draws
    assert len(prints) == len(module.VARIANTS)


def test_the_datasheet_prints_the_reference_its_caller_gives(quick_data):
    """The datasheet takes the strong teacher's numbers from its caller (the data layer imports nothing above it);
    the shipped index answers for the demo preset of this generator version, and for nothing else."""
    import json

    from drkd_viz.data.datasheet import datasheet_markdown
    from drkd_viz.data.synthetic import GENERATOR_VERSION
    from drkd_viz.shipped import reference_teacher, shipped_models

    stats = json.loads((quick_data / "stats.json").read_text())
    assert "How hard it is" not in datasheet_markdown(stats)
    reference = reference_teacher("demo", GENERATOR_VERSION)
    shipped = next(m for m in shipped_models() if m.name == "demo-teacher")
    assert reference is not None and reference["test"] == shipped.metrics["test"]
    text = datasheet_markdown(stats, reference=reference)
    assert "## How hard it is" in text and f"{100 * shipped.metrics['test']['AP']:.1f}" in text
    assert shipped.file in text and shipped.command in text
    assert reference_teacher("quick", GENERATOR_VERSION) is None and reference_teacher("demo", -1) is None
