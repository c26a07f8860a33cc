"""Training engine: configs, run folders, determinism, DDP, SIGKILL + resume, checkpoints, NaN, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import tiny, write_config
from safetensors.torch import load_file

from drkd_viz.data.synthetic import CLASSES as CLASS_NAMES
from drkd_viz.engine.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from drkd_viz.engine.config import ConfigError, OptimConfig, load_config
from drkd_viz.engine.data import IterationBatches
from drkd_viz.engine.schedule import lr_factor
from drkd_viz.engine.trainer import TrainingDiverged, architecture, train
from drkd_viz.evaluation import METRIC_KEYS, evaluate_detections

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "drkd_viz.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


# ---- configuration ----------------------------------------------------------------------------------
def test_unknown_key_lists_valid_ones_and_suggests(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "optim: unknown key 'lrr' (did you mean 'lr'?)" in msg
    assert "valid keys are: optimizer, lr, momentum, weight_decay" in msg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"trian": {}}, "unknown key 'trian' (did you mean 'train'?)"),
        ({"train": {"iterations": "ten"}}, "train.iterations: expected an integer, got 'ten'"),
        ({"optim": {"schedule": "linear"}}, "optim.schedule: 'linear' is not one of ['step', 'cosine']"),
        ({"model": {"backbone": "resnet9"}}, "unknown backbone 'resnet9'"),
        ({"optim": {"clip_grad_norm": "big"}}, "optim.clip_grad_norm: expected a number, got 'big'"),
        ({"data": {"hflip_prob": True}}, "data.hflip_prob: expected a number, got True"),
        ({"model": {"anchor_sizes": [8, "x", 32, 64, 128]}}, "model.anchor_sizes[1]: expected an integer"),
    ],
)
def test_bad_values_are_named(tmp_path, data, message):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path / "c.yaml", data))
    assert message in str(err.value)


def test_overrides_and_file_errors(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"train": {"iterations": 5}})
    cfg = load_config(path, overrides=["train.iterations=7", "optim.milestones=[0.5, 0.9]", "model.family=retinanet"])
    assert cfg.train.iterations == 7 and cfg.optim.milestones == [0.5, 0.9] and cfg.model.family == "retinanet"
    # YAML 1.1 reads 1e-4 as a string: a float field still takes it (in a file and in --set)
    (tmp_path / "exp.yaml").write_text("optim:\n  lr: 1e-4\n")
    assert load_config(tmp_path / "exp.yaml", overrides=["optim.weight_decay=5E-5"]).optim.lr == 1e-4
    assert load_config(path, overrides=["optim.weight_decay=5E-5"]).optim.weight_decay == 5e-5
    with pytest.raises(ConfigError, match="expected an integer, got '1e3'"):
        load_config(path, overrides=["train.iterations=1e3"])
    with pytest.raises(ConfigError, match=r"--set expects section\.key=value"):
        load_config(path, overrides=["train.iterations"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_shipped_configs_load():
    """Every run config under configs/ loads (the pipeline presets in configs/presets/ load in test_presets.py)."""
    configs = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "presets")
    assert configs
    for path in configs:
        load_config(path)


def test_cli_reports_config_errors_without_traceback(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"optim": {"lrr": 0.1}})
    proc = cli("train", "--config", str(path), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown key 'lrr' (did you mean 'lr'?)" in proc.stderr


# ---- schedule and batches ---------------------------------------------------------------------------
def test_lr_schedule_warmup_step_and_cosine():
    step = lr_factor(OptimConfig(warmup_iters=10, warmup_factor=0.001, milestones=[0.5, 0.8], gamma=0.1), 100)
    assert step(0) == pytest.approx(0.001) and step(5) == pytest.approx(0.5005) and step(10) == 1.0
    assert step(49) == 1.0 and step(50) == pytest.approx(0.1) and step(80) == pytest.approx(0.01)
    cosine = lr_factor(OptimConfig(schedule="cosine", warmup_iters=0, min_lr_factor=0.05), 100)
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.525) and cosine(100) == pytest.approx(0.05)


def test_batches_split_the_global_batch_and_replay_on_resume():
    whole = IterationBatches(10, 4, 6, seed=1)
    ranks = [IterationBatches(10, 4, 6, seed=1, rank=r, world=2) for r in range(2)]
    for it in range(6):
        assert whole.batch(it) == ranks[0].batch(it) + ranks[1].batch(it)
    assert list(IterationBatches(10, 4, 6, seed=1, start=3)) == list(whole)[3:]
    epoch = [i for it in range(5) for i, _ in whole.batch(it)][:10]  # first 10 samples: one epoch
    assert sorted(epoch) == list(range(10))
    with pytest.raises(Exception, match="divisible by the number of processes"):
        IterationBatches(10, 5, 6, seed=1, world=2)


# ---- a real run and its folder ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(quick_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = load_config(data=tiny(quick_data))
    train(cfg, out, quiet=True)
    return out


def test_run_folder_contents(finished_run):
    run = finished_run
    resolved = load_config(run / "config.yaml")
    assert resolved.model.num_classes == 9  # taken from the dataset and written down
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["seed"] == 3 and manifest["device"] == "cpu"
    for key in ("started", "finished", "wall_seconds", "environment", "formula"):
        assert manifest[key] is not None, key
    env = manifest["environment"]
    assert env["packages"]["torch"] and env["packages"]["torchvision"] and "commit" in env["git"]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines] == list(range(1, 9))
    for key in (
        "loss",
        "loss_classifier",
        "loss_box_reg",
        "loss_objectness",
        "loss_rpn_box_reg",
        "lr",
        "time",
        "images_per_s",
    ):
        assert key in lines[0], key
    assert lines[0]["lr"] < lines[-1]["lr"] or lines[-1]["lr"] < 0.01  # warm-up then decay
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert latest_checkpoint(run / "checkpoints").iteration == 8
    for name in ("student.safetensors", "student.json", "build_student.py"):
        assert (run / "export" / name).is_file()
    metrics = json.loads((run / "eval" / "val" / "metrics.json").read_text())
    assert list(metrics)[:12] == list(METRIC_KEYS) and "per_class" in metrics
    detections = json.loads((run / "eval" / "val" / "detections.json").read_text())
    assert manifest["metrics"]["val"]["AP"] == metrics["AP"]
    # the stored numbers are what the stored detections give
    gt = json.loads((Path(resolved.data.root) / "val" / "annotations.json").read_text())
    keep = {d["id"] for d in gt["images"][:12]}
    gt = {
        **gt,
        "images": [i for i in gt["images"] if i["id"] in keep],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in keep],
    }
    assert evaluate_detections(gt, detections).stats == {k: metrics[k] for k in METRIC_KEYS}


def test_existing_run_is_not_overwritten(finished_run):
    before = (finished_run / "manifest.json").read_bytes()
    with pytest.raises(Exception, match="already holds a run"):
        train(load_config(finished_run / "config.yaml"), finished_run, quiet=True)
    assert (finished_run / "manifest.json").read_bytes() == before  # the finished run is left as it was


def test_deterministic_rerun_on_cpu(finished_run, quick_data, tmp_path):
    train(load_config(data=tiny(quick_data)), tmp_path / "again", quiet=True)
    a = load_file(str(finished_run / "export" / "student.safetensors"))
    b = load_file(str(tmp_path / "again" / "export" / "student.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = lambda run: [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert losses(finished_run) == losses(tmp_path / "again")


def test_export_loads_into_bare_torchvision(finished_run, quick_data, tmp_path):
    """The exported student needs torchvision only: build it with build_student.py in a process that
    cannot import drkd_viz, and compare its detections with ours."""
    from drkd_viz.data.coco import CocoDetection
    from drkd_viz.engine.inference import load_student

    dataset = CocoDetection.from_split(quick_data, "val")
    images = torch.stack([dataset[i][0][:, :224, :224] for i in range(3)])
    torch.save(images, tmp_path / "images.pt")
    script = f"""
import sys, torch
sys.modules['drkd_viz'] = None  # importing drkd_viz would fail
torch.set_num_threads({torch.get_num_threads()})  # same float summation order as this process
from safetensors.torch import load_file
exec(open({str(finished_run / "export" / "build_student.py")!r}).read())
model.load_state_dict(load_file({str(finished_run / "export" / "student.safetensors")!r}))
model.eval()
with torch.no_grad():
    out = model(list(torch.load({str(tmp_path / "images.pt")!r})))
torch.save([{{k: v for k, v in o.items()}} for o in out], {str(tmp_path / "bare.pt")!r})
"""
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    bare = torch.load(tmp_path / "bare.pt", weights_only=True)
    ours, _ = load_student(finished_run)
    with torch.no_grad():
        expected = ours(list(images))
    for a, b in zip(bare, expected, strict=True):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])


def test_eval_and_predict_cli(finished_run, quick_data, tmp_path):
    proc = cli("eval", "--run", str(finished_run), "--split", "test")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((finished_run / "eval" / "test" / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics)
    images = sorted((quick_data / "test" / "images").iterdir())[:2]
    proc = cli(
        "predict",
        "--run",
        str(finished_run),
        *map(str, images),
        "--out",
        str(tmp_path / "pred"),
        "--score-threshold",
        "0.0",
    )
    assert proc.returncode == 0, proc.stderr
    for image in images:
        result = json.loads((tmp_path / "pred" / f"{image.stem}.json").read_text())
        assert result["image"] == str(image) and isinstance(result["detections"], list)
        for det in result["detections"]:  # an 8-iteration model may find nothing above its score threshold
            assert {"bbox_xyxy", "score", "class", "label"} <= set(det) and det["class"] in CLASS_NAMES
        assert (tmp_path / "pred" / f"{image.stem}.png").stat().st_size > 1000
    proc = cli("predict", "--run", str(finished_run), str(tmp_path / "missing.jpg"))
    assert proc.returncode == 2 and "image file not found" in proc.stderr


# ---- checkpoints ----------------------------------------------------------------------------------------
def test_tampered_checkpoint_is_refused(quick_data, tmp_path):
    run = tmp_path / "run"
    cfg = load_config(data=tiny(quick_data, train={"iterations": 4, "eval_split": "none"}))
    train(cfg, run, quiet=True)
    ckpt = latest_checkpoint(run / "checkpoints")
    weights = ckpt.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"was modified or is corrupt: model\.safetensors has sha256"):
        load_checkpoint(ckpt, architecture(cfg))
    proc = cli("train", "--config", str(run / "config.yaml"), "--out", str(run), "--resume")
    assert proc.returncode == 2 and "was modified or is corrupt" in proc.stderr and "Traceback" not in proc.stderr


def test_checkpoint_of_another_architecture_is_refused(quick_data, tmp_path):
    cfg_a = load_config(data=tiny(quick_data, train={"iterations": 4, "eval_split": "none"}))
    train(cfg_a, tmp_path / "a", quiet=True)
    cfg_b = load_config(data=tiny(quick_data, model={"backbone": "resnet18"}))
    ckpt = latest_checkpoint(tmp_path / "a" / "checkpoints")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(
            ckpt,
            architecture(
                load_config(
                    data={
                        **tiny(quick_data),
                        "model": {**tiny(quick_data)["model"], "backbone": "resnet18", "num_classes": 9},
                    }
                )
            ),
        )
    msg = str(err.value)
    assert "belongs to another architecture" in msg and "resnet10" in msg and "resnet18" in msg
    assert cfg_b.model.backbone == "resnet18"


# ---- divergence -------------------------------------------------------------------------------------------
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(quick_data, tmp_path):
    cfg = load_config(
        data=tiny(
            quick_data,
            optim={"lr": 1e9, "warmup_iters": 0, "clip_grad_norm": None},
            train={"iterations": 30, "checkpoint_every": 1, "eval_split": "none"},
        )
    )
    with pytest.raises(TrainingDiverged) as err:
        train(cfg, tmp_path / "nan", quiet=True)
    msg = str(err.value)
    assert "training diverged at iteration" in msg and "loss term 'loss" in msg and "not finite" in msg
    assert "the last good checkpoint is" in msg
    manifest = json.loads((tmp_path / "nan" / "manifest.json").read_text())
    assert manifest["status"] == "diverged"
    last = latest_checkpoint(tmp_path / "nan" / "checkpoints")
    weights, _ = load_checkpoint(last, architecture(load_config(tmp_path / "nan" / "config.yaml")))
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


# ---- SIGKILL and resume ------------------------------------------------------------------------------------
def test_sigkill_then_resume_equals_an_uninterrupted_run(quick_data, tmp_path):
    cfg = tiny(quick_data, train={"iterations": 40, "checkpoint_every": 5, "eval_split": "val"})
    config = write_config(tmp_path / "c.yaml", cfg)
    proc = subprocess.Popen(
        [PYTHON, "-m", "drkd_viz.cli", "train", "--config", str(config), "--out", str(tmp_path / "killed"), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    target = tmp_path / "killed" / "checkpoints" / "iter_0000010" / "meta.json"
    deadline = time.time() + 120
    while not target.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.02)
    assert proc.poll() is None  # still training when killed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len((tmp_path / "killed" / "metrics.jsonl").read_text().splitlines())
    assert 10 <= killed_at < 40
    resumed = cli("train", "--config", str(config), "--out", str(tmp_path / "killed"), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    straight = cli("train", "--config", str(config), "--out", str(tmp_path / "straight"), "--quiet")
    assert straight.returncode == 0, straight.stderr

    a = load_file(str(tmp_path / "killed" / "export" / "student.safetensors"))
    b = load_file(str(tmp_path / "straight" / "export" / "student.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    def losses(run):
        rows = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("time", "data_time", "images_per_s")} for r in rows]

    assert losses("killed") == losses("straight")
    ma = json.loads((tmp_path / "killed" / "eval" / "val" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "straight" / "eval" / "val" / "metrics.json").read_text())
    assert ma == mb
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["resumed_from"] >= 10


# ---- torchrun ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def same_size_data(quick_data, tmp_path_factory):
    """16 training images cropped to 224 x 224: with equal sizes the padded batches of one process
    and of two processes are identical, so their results can be compared number for number."""
    from PIL import Image

    root = tmp_path_factory.mktemp("same")
    (root / "train" / "images").mkdir(parents=True)
    coco = json.loads((quick_data / "train" / "annotations.json").read_text())
    images, annotations = coco["images"][:16], []
    for image in images:
        Image.open(quick_data / "train" / "images" / image["file_name"]).crop((0, 0, 224, 224)).save(
            root / "train" / "images" / image["file_name"]
        )
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = ann["bbox"]
            x2, y2 = min(x + w, 224), min(y + h, 224)
            if x2 - x >= 4 and y2 - y >= 4:
                annotations.append({**ann, "bbox": [x, y, x2 - x, y2 - y]})
        image["width"] = image["height"] = 224
    (root / "train" / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": coco["categories"]})
    )
    return root


def test_two_process_ddp_matches_one_process(same_size_data, tmp_path):
    """torchrun --nproc_per_node=2 with the gloo backend: (a) both replicas end with identical weights,
    (b) the result equals one process with the same global batch to within 1e-6 (float summation order)."""
    cfg = tiny(
        same_size_data,
        model={"family": "retinanet", "norm": "gn"},
        train={"iterations": 6, "batch_size": 4, "eval_split": "none", "checkpoint_every": 3},
    )
    config = write_config(tmp_path / "c.yaml", cfg)
    env = {"OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [
            PYTHON,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",
            "-m",
            "drkd_viz.cli",
            "train",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "ddp"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("finished") == 1  # only rank 0 reports and writes
    single = cli("train", "--config", str(config), "--out", str(tmp_path / "single"), "--quiet", env=env)
    assert single.returncode == 0, single.stderr

    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    checksums = manifest["replica_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    a = load_file(str(tmp_path / "ddp" / "export" / "student.safetensors"))
    b = load_file(str(tmp_path / "single" / "export" / "student.safetensors"))
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst < 1e-6, worst
    la = [json.loads(x)["loss"] for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    assert la == pytest.approx(lb, rel=1e-5, abs=1e-6) and len(la) == 6
    assert len(list((tmp_path / "ddp" / "tensorboard").glob("events.*"))) == 1
