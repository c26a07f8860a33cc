"""The embedded dataset: determinism, size distribution, structure, datasheet."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drkd_viz.data.synthetic import (
    CLASSES,
    MIN_VISIBLE_FRACTION,
    PRESETS,
    SPLITS,
    dataset_statistics,
    draw_image,
    generate_dataset,
    image_seed,
)
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
        from drkd_viz.data.synthetic import _coco_dict

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
            coco[split] = _coco_dict(records, split, PRESETS[preset], 0)
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
    import time

    started = time.perf_counter()
    stats = generate_dataset(quick_data, preset="quick", seed=0, progress=False)
    assert time.perf_counter() - started < 1.0
    assert stats["preset"] == "quick"


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
