"""Backbone pre-training on crops of the train split: a tiny run, and its weights load into detectors."""

from __future__ import annotations

import json

import pytest

from drkd_viz.engine.pretrain import PretrainConfig, crop_dataset, pretrain_backbone
from drkd_viz.errors import UserError
from drkd_viz.models.factory import DetectorConfig, build_detector
from drkd_viz.models.weights import load_weights


def test_crops_hold_every_object_and_background(quick_data):
    cfg = PretrainConfig(crop_size=32)
    crops, labels, sources = crop_dataset(
        quick_data / "train" / "images", quick_data / "train" / "annotations.json", cfg
    )
    coco = json.loads((quick_data / "train" / "annotations.json").read_text())
    assert crops.shape[1:] == (32, 32, 3) and crops.dtype.name == "uint8"
    assert (labels > 0).sum() == len(coco["annotations"])  # one crop per object
    assert (labels == 0).sum() > 0.9 * cfg.background_per_image * len(coco["images"])
    assert set(labels[labels > 0].tolist()) <= set(range(1, len(coco["categories"]) + 1))
    assert sources.max() == len(coco["images"]) - 1


@pytest.mark.parametrize("backbone", ["resnet10", "resnet18"])
def test_a_tiny_pretraining_loads_into_both_detector_families(quick_data, tmp_path, backbone):
    out = tmp_path / f"{backbone}.safetensors"
    cfg = PretrainConfig(backbone=backbone, crop_size=32, iterations=3, batch_size=16, warmup_iters=1)
    record = pretrain_backbone(
        quick_data / "train" / "images", quick_data / "train" / "annotations.json", out, cfg, progress=False
    )
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text()) == record
    assert 0.0 <= record["held_out_accuracy"] <= 1.0 and record["crops"]["classes"] == 9
    for family in ("faster_rcnn", "retinanet"):
        for norm in ("bn", "frozen_bn"):
            detector = build_detector(DetectorConfig(family=family, backbone=backbone, num_classes=9, norm=norm))
            before = detector.backbone.body.conv1.weight.detach().clone()
            report = load_weights(detector, out)
            assert report.backbone_only and report.ok
            assert not before.equal(detector.backbone.body.conv1.weight)


def test_pretraining_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(UserError, match="ResNet backbones"):
        PretrainConfig(backbone="mobilenet_v3_large")
    with pytest.raises(UserError, match=r"\.safetensors"):
        pretrain_backbone(tmp_path, tmp_path / "a.json", tmp_path / "w.pt", PretrainConfig(iterations=1))
