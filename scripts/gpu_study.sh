#!/usr/bin/env bash
# The controlled study of the relation issue on one GPU (hours on 2 CPU cores, minutes on a GPU), in three parts,
# each cached run by run, so that the script can be stopped and rerun:
#   1. the round-6 ladder on val (scripts/probe_student.py --only relation-ladder): what the defaults were chosen on;
#   2. the factorial {imitation} x {pixel relation} x {instance relation} on val, 2 seeds (--only factorial);
#   3. the study preset on test: 5 seeds of baseline, feature imitation, PKD, DRKD and the controls' arms (relation
#      only, rotated teacher, shuffled targets), one seed of each ablation, and its report with the bar.
# Every val result lands in configs/demo/val_ladder.json (commit it); the report in RUNS/reports/study/.
#   scripts/gpu_study.sh [RUNS]      (default runs/demo; JOBS=8 students at once)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/demo}
JOBS=${JOBS:-8}
scripts/setup.sh demo
PY=.venv/bin/python
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu (no GPU: this takes hours)')"
# the demo's data, its shipped teacher and the students' pre-trained backbone, made once
"$PY" -m drkd_viz.cli pipeline --preset demo --out "$RUNS" --quiet
"$PY" scripts/probe_student.py --runs "$RUNS" --out "$RUNS/probe" --only relation-ladder
"$PY" scripts/probe_student.py --runs "$RUNS" --out "$RUNS/probe" --only factorial
"$PY" -m drkd_viz.cli pipeline --preset study --out "$RUNS" --jobs "$JOBS" --quiet
echo "report: $RUNS/reports/study/report.md"
