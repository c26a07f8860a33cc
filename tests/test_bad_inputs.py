"""Every bad input of the dataset loader gets a message saying what is wrong and where."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drkd_viz.data.coco import CocoDetection
from drkd_viz.data.images import load_image
from drkd_viz.data.validation import validate_coco
from drkd_viz.errors import DatasetError


def _dataset(tmp_path: Path, size=(64, 48)) -> dict:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(images / "a.png")
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": size[0], "height": size[1]}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 5, "bbox": [4, 4, 20, 10], "iscrowd": 0}],
        "categories": [{"id": 5, "name": "thing"}],
    }


def _open(tmp_path: Path, data) -> CocoDetection:
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return CocoDetection(tmp_path / "images", path)


def test_missing_top_level_key(tmp_path):
    data = _dataset(tmp_path)
    del data["categories"]
    with pytest.raises(DatasetError, match="missing top-level key 'categories'"):
        _open(tmp_path, data)


def test_wrong_types_are_listed_by_json_path(tmp_path):
    data = _dataset(tmp_path)
    data["images"][0]["width"] = "64"
    data["annotations"][0]["bbox"] = [1, 2, "x", 4]
    with pytest.raises(DatasetError) as err:
        _open(tmp_path, data)
    message = str(err.value)
    assert "images[0].width: expected a positive integer, got '64'" in message
    assert "annotations[0] (id 10).bbox: expected 4 finite numbers" in message
    assert "ann.json" in message


def test_missing_annotation_keys(tmp_path):
    data = _dataset(tmp_path)
    del data["annotations"][0]["bbox"]
    with pytest.raises(DatasetError, match=r"annotations\[0\]: missing key 'bbox'"):
        _open(tmp_path, data)


def test_not_json_and_not_found(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{'images': [}")
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match=r"bad.json is not valid JSON \(line 1"):
        CocoDetection(tmp_path / "images", bad)
    with pytest.raises(DatasetError, match="annotation file not found"):
        CocoDetection(tmp_path / "images", tmp_path / "nope.json")
    with pytest.raises(DatasetError, match="images folder not found"):
        CocoDetection(tmp_path / "nothing", bad)


def test_degenerate_boxes_are_skipped_and_counted(tmp_path):
    data = _dataset(tmp_path)
    data["annotations"] += [
        {"id": 11, "image_id": 1, "category_id": 5, "bbox": [4, 4, 0, 10]},
        {"id": 12, "image_id": 1, "category_id": 5, "bbox": [4, 4, 5, -1]},
    ]
    ds = _open(tmp_path, data)
    assert ds.report.skipped_degenerate == [11, 12]
    assert "skipped 2 boxes with width or height <= 0 (annotation ids 11, 12)" in ds.describe()
    _, target = ds[0]
    assert len(target["boxes"]) == 1


def test_boxes_beyond_the_image_are_clipped(tmp_path):
    data = _dataset(tmp_path)
    data["annotations"][0]["bbox"] = [-5, 40, 30, 30]  # image is 64 x 48
    ds = _open(tmp_path, data)
    assert ds.report.clipped == [10]
    assert "clipped 1 boxes" in ds.describe()
    _, target = ds[0]
    assert target["boxes"].tolist() == [[0.0, 40.0, 25.0, 48.0]]


def test_unknown_category_ids(tmp_path):
    data = _dataset(tmp_path)
    data["annotations"][0]["category_id"] = 77
    with pytest.raises(
        DatasetError, match=r"category ids not listed in 'categories': 77 \(1 annotations\); known ids are \[5\]"
    ):
        _open(tmp_path, data)


def test_unknown_image_id(tmp_path):
    data = _dataset(tmp_path)
    data["annotations"][0]["image_id"] = 3
    with pytest.raises(DatasetError, match="image_id: 3 is not the id of any entry in 'images'"):
        _open(tmp_path, data)


def test_missing_image_names_the_file(tmp_path):
    data = _dataset(tmp_path)
    data["images"][0]["file_name"] = "gone.jpg"
    ds = _open(tmp_path, data)
    with pytest.raises(DatasetError, match=r"image file not found: .*images/gone.jpg"):
        ds[0]


def test_corrupt_image_names_the_file(tmp_path):
    data = _dataset(tmp_path)
    (tmp_path / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    ds = _open(tmp_path, data)
    with pytest.raises(DatasetError, match=r"cannot read .*a.png: not an image file"):
        ds[0]


def test_truncated_image_names_the_file(tmp_path):
    data = _dataset(tmp_path)
    path = tmp_path / "images" / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    ds = _open(tmp_path, data)
    with pytest.raises(DatasetError, match=r"a.png"):
        ds[0]


def test_size_mismatch_between_json_and_file(tmp_path):
    data = _dataset(tmp_path)
    data["images"][0]["width"] = 100
    ds = _open(tmp_path, data)
    with pytest.raises(DatasetError, match="is 64x48 pixels but the annotation file says 100x48"):
        ds[0]


@pytest.mark.parametrize(
    ("mode", "array"),
    [
        ("L", np.full((48, 64), 77, np.uint8)),
        ("RGBA", np.dstack([np.full((48, 64, 3), 200, np.uint8), np.full((48, 64), 255, np.uint8)])),
        ("I;16", (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20)),
    ],
)
def test_grey_rgba_and_16_bit_images_are_converted(tmp_path, mode, array):
    data = _dataset(tmp_path)
    path = tmp_path / "images" / "a.png"
    Image.fromarray(array).save(path)
    assert Image.open(path).mode == mode
    image, _ = _open(tmp_path, data)[0]
    assert image.shape == (3, 48, 64)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    if mode == "I;16":  # the full 16-bit range is kept as contrast, not clipped to white
        assert float(image.min()) == 0.0 and float(image.max()) == 1.0


def test_absurdly_large_image_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("1", (12000, 9000)).save(path)  # 108 MP, a few KB on disk
    assert path.stat().st_size < 200_000

    def no_decoding(self):  # the refusal must come from the header alone
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(
        DatasetError, match=r"12000x9000 = 108 megapixels, above the limit of 64 MP; it was not decoded"
    ):
        load_image(path)


def test_check_only_mode_keeps_ground_truth_unchanged():
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 5, 5]}],
        "categories": [{"id": 1, "name": "x"}],
    }
    cleaned, _ = validate_coco(data, fix=False)
    assert cleaned["annotations"][0]["bbox"] == [8, 8, 5, 5]
    cleaned, report = validate_coco(data, fix=True)
    assert cleaned["annotations"][0]["bbox"] == [8.0, 8.0, 2.0, 2.0] and report.clipped == [1]


def test_many_problems_are_capped_in_the_message(tmp_path):
    data = _dataset(tmp_path)
    data["annotations"] = [{"id": i, "image_id": 1, "category_id": 5, "bbox": "bad"} for i in range(30)]
    with pytest.raises(DatasetError, match=r"… and 20 more"):
        _open(tmp_path, data)
