"""The COCO dataset loader on real COCO val2017 photos and on the embedded data; transforms; collate."""

from __future__ import annotations

import json

import torch

from drkd_viz.data.coco import CocoDetection, build_transforms, collate_detection


def test_real_mini_coco_counts_and_crowd_handling(mini_coco):
    raw = json.loads((mini_coco / "annotations.json").read_text())
    ds = CocoDetection(mini_coco / "images", mini_coco / "annotations.json")
    assert len(ds) == len(raw["images"]) == 55
    assert ds.num_classes == 81 and len(ds.class_names) == 81
    crowd = [a for a in raw["annotations"] if a["iscrowd"]]
    assert ds.report.crowd == len(crowd) == 12
    # targets carry every non-crowd box and no crowd box
    total = 0
    crowd_images = {a["image_id"] for a in crowd}
    checked_crowd_image = False
    for i in range(len(ds)):
        target = ds.raw_target(i)
        image_id = target["image_id"]
        expected = [a for a in raw["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
        assert len(target["boxes"]) == len(target["labels"]) == len(expected)
        total += len(expected)
        if image_id in crowd_images:
            checked_crowd_image = True
    assert checked_crowd_image
    assert total == len(raw["annotations"]) - len(crowd)


def test_label_mapping_round_trip(mini_coco):
    ds = CocoDetection(mini_coco / "images", mini_coco / "annotations.json")
    ids = sorted(c["id"] for c in ds.categories)
    assert ids != list(range(1, 81))  # COCO's ids have gaps (1..90)
    labels = [ds.category_id_to_label(c) for c in ids]
    assert labels == list(range(1, 81))
    assert [ds.label_to_category_id(label) for label in labels] == ids
    # names follow labels
    by_id = {c["id"]: c["name"] for c in ds.categories}
    assert all(ds.class_names[ds.category_id_to_label(c)] == by_id[c] for c in ids)


def test_getitem_gives_torchvision_targets(mini_coco):
    ds = CocoDetection(mini_coco / "images", mini_coco / "annotations.json")
    image, target = ds[0]
    info = ds.image_info(0)
    assert image.dtype == torch.float32 and image.shape == (3, info["height"], info["width"])
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert type(target["boxes"]) is torch.Tensor and target["boxes"].dtype == torch.float32
    assert target["labels"].dtype == torch.int64 and int(target["labels"].min()) >= 1
    boxes = target["boxes"]
    assert bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all())


def test_images_without_annotations_kept_for_eval_skipped_for_training(mini_coco, tmp_path):
    raw = json.loads((mini_coco / "annotations.json").read_text())
    first = raw["images"][0]
    raw["images"].append({**first, "id": 999_999_999})  # same picture, no annotations
    ann = tmp_path / "with_empty.json"
    ann.write_text(json.dumps(raw))
    ds_eval = CocoDetection(mini_coco / "images", ann)
    ds_train = CocoDetection(mini_coco / "images", ann, skip_empty=True)
    assert len(ds_eval) == 56 and len(ds_train) == 55
    assert ds_eval.report.images_without_annotations == 1
    index = ds_eval.ids.index(999_999_999)
    _, target = ds_eval[index]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_horizontal_flip_moves_boxes(quick_data):
    plain = CocoDetection.from_split(quick_data, "train")
    flipped = CocoDetection.from_split(quick_data, "train", transforms=build_transforms(train=True, hflip_prob=1.0))
    image, target = plain[3]
    image_f, target_f = flipped[3]
    width = image.shape[-1]
    assert torch.equal(image_f, image.flip(-1))
    expected = target["boxes"].clone()
    expected[:, 0], expected[:, 2] = width - target["boxes"][:, 2], width - target["boxes"][:, 0]
    assert torch.allclose(target_f["boxes"], expected)
    assert torch.equal(target_f["labels"], target["labels"])


def test_resize_scales_boxes(quick_data):
    plain = CocoDetection.from_split(quick_data, "val")
    resized = CocoDetection.from_split(
        quick_data, "val", transforms=build_transforms(train=False, shorter_sides=[128], max_side=400)
    )
    image, target = plain[0]
    image_r, target_r = resized[0]
    assert min(image_r.shape[-2:]) == 128
    sy, sx = image_r.shape[-2] / image.shape[-2], image_r.shape[-1] / image.shape[-1]
    scale = torch.tensor([sx, sy, sx, sy])
    kept = target_r["labels"].numel()
    assert kept >= target["labels"].numel() - 2  # only boxes that vanish are dropped
    if kept == target["labels"].numel():
        assert torch.allclose(target_r["boxes"], target["boxes"] * scale, atol=1e-3)


def test_collate_keeps_lists(quick_data):
    ds = CocoDetection.from_split(quick_data, "train")
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_detection)
    images, targets = next(iter(loader))
    assert isinstance(images, list) and len(images) == 3 and isinstance(targets, list)
    assert all(img.dim() == 3 for img in images) and all("boxes" in t for t in targets)


def test_embedded_data_loads_with_all_classes(quick_data):
    ds = CocoDetection.from_split(quick_data, "test")
    assert ds.num_classes == 9
    assert ds.report.skipped_degenerate == [] and ds.report.clipped == []
