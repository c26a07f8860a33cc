"""Detector factory, local weight loading, and the FPN feature / transformed-target capture."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from drkd_viz.data.coco import CocoDetection, collate_detection
from drkd_viz.errors import UserError, WeightsError
from drkd_viz.models.capture import fpn_features, record_forward, transform_inputs
from drkd_viz.models.factory import BACKBONES, DetectorConfig, build_detector
from drkd_viz.models.weights import load_weights


@pytest.fixture(scope="module")
def quick_batch(quick_data):
    ds = CocoDetection.from_split(quick_data, "train")
    return collate_detection([ds[i] for i in range(2)])


def _small(family: str, backbone: str, **kw) -> DetectorConfig:
    return DetectorConfig(
        family=family,
        backbone=backbone,
        num_classes=9,
        fpn_channels=32,
        min_size=160,
        max_size=200,
        box_head_width=64,
        **kw,
    )


@pytest.mark.parametrize("family", ["faster_rcnn", "retinanet"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_backward_on_cpu(family, backbone, quick_batch):
    torch.manual_seed(0)
    model = build_detector(_small(family, backbone))
    images, targets = quick_batch
    model.train()
    losses = model(images, targets)
    expected = (
        {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
        if family == "faster_rcnn"
        else {"classification", "bbox_regression"}
    )
    assert set(losses) == expected
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "scores", "labels"}
    assert out[0]["boxes"].shape[1] == 4


def test_levels_and_anchors_follow_the_config():
    assert DetectorConfig(family="faster_rcnn").levels == ["P2", "P3", "P4", "P5", "P6"]
    assert DetectorConfig(family="retinanet").levels == ["P3", "P4", "P5", "P6", "P7"]
    coco = DetectorConfig(min_size=800, max_size=1333)  # torchvision's COCO setting
    assert coco.resolved_anchor_sizes() == (32, 64, 128, 256, 512)
    assert DetectorConfig(anchor_sizes=(8, 16, 32, 64, 128)).resolved_anchor_sizes() == (8, 16, 32, 64, 128)
    model = build_detector(_small("faster_rcnn", "resnet18", rpn_post_nms_top_n_test=77))
    assert model.rpn._post_nms_top_n["testing"] == 77
    assert model.backbone.out_channels == 32 and model.roi_heads.box_head.fc6.out_features == 64


def test_bad_config_values_are_named():
    with pytest.raises(UserError, match="unknown backbone 'resnet9'"):
        DetectorConfig(backbone="resnet9")
    with pytest.raises(UserError, match="unknown detector family 'yolo'"):
        DetectorConfig(family="yolo")
    with pytest.raises(UserError, match="anchor_sizes needs one size per FPN level"):
        DetectorConfig(anchor_sizes=(8, 16))


def test_trainable_layers_freeze_the_stem():
    model = build_detector(_small("faster_rcnn", "resnet18", trainable_backbone_layers=2))
    body = model.backbone.body
    assert not body.conv1.weight.requires_grad and not body.layer2[0].conv1.weight.requires_grad
    assert body.layer3[0].conv1.weight.requires_grad and body.layer4[0].conv1.weight.requires_grad


# ---- weights -----------------------------------------------------------------------------------------
def test_safetensors_round_trip_gives_identical_detections(tmp_path, quick_batch):
    torch.manual_seed(1)
    a = build_detector(_small("faster_rcnn", "resnet18")).eval()
    save_file(a.state_dict(), str(tmp_path / "w.safetensors"))
    torch.manual_seed(2)
    b = build_detector(_small("faster_rcnn", "resnet18")).eval()
    report = load_weights(b, tmp_path / "w.safetensors")
    assert report.ok and not report.backbone_only
    images, _ = quick_batch
    with torch.no_grad():
        out_a, out_b = a(images), b(images)
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(out_a, out_b, strict=True))


def test_torchvision_state_dict_pth_loads(tmp_path):
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    reference = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    torch.save({"model": reference.state_dict()}, tmp_path / "tv.pth")  # torchvision references' layout
    ours = build_detector(
        DetectorConfig(
            backbone="resnet50",
            num_classes=91,
            fpn_channels=256,
            norm="frozen_bn",
            box_head_width=1024,
            min_size=800,
            max_size=1333,
        )
    )
    report = load_weights(ours, tmp_path / "tv.pth")
    assert report.ok
    assert torch.equal(
        ours.roi_heads.box_predictor.cls_score.weight, reference.roi_heads.box_predictor.cls_score.weight
    )


def test_mismatch_names_the_layers(tmp_path):
    source = build_detector(_small("faster_rcnn", "resnet18"))
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    other = build_detector(
        DetectorConfig(
            family="faster_rcnn",
            backbone="resnet18",
            num_classes=4,
            fpn_channels=32,
            min_size=160,
            max_size=200,
            box_head_width=64,
        )
    )
    with pytest.raises(WeightsError) as err:
        load_weights(other, tmp_path / "w.safetensors")
    msg = str(err.value)
    assert "roi_heads.box_predictor.cls_score.weight (file [9, 64], model [4, 64])" in msg
    assert "skip_mismatched" in msg
    report = load_weights(other, tmp_path / "w.safetensors", skip_mismatched=True)
    assert len(report.mismatched) == 4 and not report.missing


def test_other_architecture_is_refused(tmp_path):
    save_file(build_detector(_small("retinanet", "resnet18")).state_dict(), str(tmp_path / "r.safetensors"))
    with pytest.raises(WeightsError) as err:
        load_weights(build_detector(_small("faster_rcnn", "resnet18")), tmp_path / "r.safetensors")
    assert "layers in the file are unknown to the model: " in str(err.value)
    assert "head.classification_head" in str(err.value) and "rpn.head.conv" in str(err.value)


def test_classification_backbone_loads_into_the_body(tmp_path):
    from torchvision.models import resnet18

    classifier = resnet18(weights=None)
    torch.save(classifier.state_dict(), tmp_path / "resnet18.pth")
    model = build_detector(_small("faster_rcnn", "resnet18"))
    report = load_weights(model, tmp_path / "resnet18.pth")
    assert report.backbone_only and report.ok
    assert torch.equal(model.backbone.body.layer1[0].conv1.weight, classifier.layer1[0].conv1.weight)


def test_pickled_code_is_never_executed(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"model": Boom()}))
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_weights(build_detector(_small("faster_rcnn", "resnet18")), tmp_path / "evil.pth")


def test_missing_weights_file():
    with pytest.raises(WeightsError, match=r"weights file not found: nowhere\.safetensors"):
        load_weights(build_detector(_small("faster_rcnn", "resnet18")), "nowhere.safetensors")


# ---- capture -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["faster_rcnn", "retinanet"])
def test_capture_gives_named_levels_and_transformed_targets(family, quick_batch):
    torch.manual_seed(0)
    cfg = _small(family, "resnet18")
    model = build_detector(cfg).train()
    images, targets = quick_batch
    with record_forward(model) as rec:
        losses = model(images, targets)
    assert list(rec.features) == cfg.levels
    padded = rec.images.tensors
    for name, feat in rec.features.items():
        stride = 2 ** int(name[1:])
        assert feat.shape[:2] == (2, 32) and feat.shape[-2] == -(-padded.shape[-2] // stride)
    # targets are in the detector's resized coordinates: boxes scaled by the resize factor
    for original, transformed, size, image in zip(targets, rec.targets, rec.images.image_sizes, images, strict=True):
        sy, sx = size[0] / image.shape[-2], size[1] / image.shape[-1]
        assert min(size) == 160 or max(size) == 200
        scale = torch.tensor([sx, sy, sx, sy])
        assert torch.allclose(transformed["boxes"], original["boxes"] * scale, rtol=1e-4, atol=1e-3)
    # the caller's targets are untouched
    assert targets[0]["boxes"].max() <= max(images[0].shape[-2:])
    # features are the live tensors feeding the heads: a loss on them reaches the backbone
    model.zero_grad()
    (sum(losses.values()) * 0 + rec.features[cfg.levels[0]].mean()).backward()
    assert float(model.backbone.body.conv1.weight.grad.abs().sum()) > 0


def test_teacher_features_on_the_students_input(quick_batch):
    torch.manual_seed(0)
    student = build_detector(_small("faster_rcnn", "resnet10")).train()
    teacher = build_detector(_small("faster_rcnn", "resnet34")).eval()
    images, targets = quick_batch
    with record_forward(student) as rec:
        student(images, targets)
    with torch.no_grad():
        teacher_feats = fpn_features(teacher, rec.images.tensors)
    assert list(teacher_feats) == list(rec.features)
    assert all(teacher_feats[k].shape == rec.features[k].shape for k in teacher_feats)
    # the same transform without the heads gives the same padded batch and boxes
    image_list, moved = transform_inputs(student.eval(), images, targets)
    assert torch.equal(image_list.tensors, rec.images.tensors)
    assert torch.allclose(moved[0]["boxes"], rec.targets[0]["boxes"])


def test_capture_in_eval_mode_has_features_and_detections(quick_batch):
    model = build_detector(_small("retinanet", "resnet18")).eval()
    images, _ = quick_batch
    with torch.no_grad(), record_forward(model) as rec:
        detections = model(images)
    assert rec.targets is None and list(rec.features) == ["P3", "P4", "P5", "P6", "P7"]
    assert len(detections) == 2
