#!/usr/bin/env bash
# One GPU session of fip as ONE command on a lent GPU machine (docs/speed.md, "On a GPU"): sets up Python there,
# then benchmarks/gpu_session.py times every shipped approximator on CUDA at 1080p and 4K, runs the CUDA tests and
# trains what the minutes left allow; results in $OUT (timings.json, session.log, env.txt, tests.xml,
# models.tar.gz).
#
#   python benchmarks/gpu_prepare.py                  # here, first: packs .gpu-carry/ (photos, wheels)
#   bash benchmarks/gpu_session.sh                    # there: the tool's run, carry [".gpu-carry"], timeout_s 600
#   python benchmarks/gpu_apply.py FOLDER             # here, after: the tool's files_at; merges into the cards
#   bash benchmarks/gpu_session.sh --dry-run          # here: the same steps on the CPU, tiny sizes, few photos
#
# Everything ends within FIP_GPU_SECONDS (default 540) of the start, so the tool's 600-second limit never cuts it.
# Settings: FIP_GPU_TRAIN (operators to fip build, comma-separated; default smooth.l0; empty: none),
# FIP_GPU_TRAIN_ARGS (more fip train options for them, e.g. '--data.batch_size 16'),
# FIP_GPU_OPERATORS (the operators to time; default all shipped), FIP_GPU_SKIP (steps to leave out: networks,
# train, tests, references), FIP_GPU_DRY_RUN=1 (as --dry-run), FIP_GPU_LINK=1 (skip building fip: link the tree).
set -uo pipefail

start=$(date +%s)
dry=${FIP_GPU_DRY_RUN:-0}
[[ "${1:-}" == "--dry-run" ]] && dry=1
seconds=${FIP_GPU_SECONDS:-540}
deadline=$((start + seconds))
carry=.gpu-carry
if [[ $dry == 1 ]]; then
  work=${FIP_GPU_WORK:-/tmp/fip-gpu-dry}
  out=${OUT:-$work/out}
  python=${PYTHON:-.venv/bin/python}
  export OMP_NUM_THREADS=1  # a dry run shares a small CPU
else
  work=/tmp/fip-gpu
  out=${OUT:?OUT is not set: the device tool sets it (for a run here: --dry-run)}
  python=${PYTHON:-python3}
fi
site=$work/site
export PYTHONUNBUFFERED=1 FIP_CACHE=$work/cache MPLBACKEND=Agg
rm -rf "$work/site" "$work/tree" "$work/builds"
mkdir -p "$out" "$work"
rm -f "$out"/{timings.json,session.log,env.txt,tests.xml,models.tar.gz}  # a dry run's earlier results

say() { echo "[$(date +%H:%M:%S)] $*"; }

link_fip() {  # fip as an editable install would give it: the tree's packages under their import names, entry points
  mkdir -p "$site"
  ln -sfn "$PWD/fip" "$site/fip"
  ln -sfn "$PWD/operators" "$site/fip_operators"
  ln -sfn "$PWD/train" "$site/fip_train"
  ln -sfn "$PWD/demo" "$site/fip_demo"
  "$python" - "$site" <<'EOF'
import pathlib, sys, tomllib

project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path(sys.argv[1]) / f"fip_photo-{project['version']}.dist-info"
info.mkdir(exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
    for group, entries in groups.items()))
EOF
}

setup() {
  local gpu
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null) || gpu=none
  say "setup: $gpu"
  if [[ $dry == 1 ]]; then  # the wheels are for CPython 3.12 there: here only their presence is checked
    ls "$carry"/wheels/*.whl >/dev/null ||
      { say "setup: no wheels in $carry/wheels: python benchmarks/gpu_prepare.py"; return 1; }
  else
    timeout 120 "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "$carry"/wheels/*.whl || say "setup: the carried wheels did not all install"
  fi
  if [[ ${FIP_GPU_LINK:-0} == 1 ]]; then
    link_fip
  else
    local tree=.
    if [[ $dry == 1 ]]; then  # build from a copy: the shared checkout gets no build folders
      tree=$work/tree
      mkdir -p "$tree"
      cp -r pyproject.toml README.md LICENSE NOTICE fip operators train demo "$tree"/
      find "$tree" -name __pycache__ -prune -exec rm -rf {} +
    fi
    timeout 150 "$python" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
      --target "$site" "$tree" || { say "setup: building fip failed: linking the tree instead"; link_fip; }
  fi
  say "setup: fip installed as $(ls -d "$site"/fip_photo-*info 2>/dev/null || echo 'nothing: no dist-info')"
  PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} timeout 120 "$python" - <<'EOF'
import importlib, importlib.metadata as metadata

import torch

import fip
print(f"python: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
print(f"python: fip from {fip.__file__}; operator plugins: "
      + ", ".join(sorted(e.name for e in metadata.entry_points(group="fip.operators"))))
for name in ("fip_operators", "fip_train", "kornia", "pyamg", "rawpy", "jsonargparse", "pytorch_lightning",
             "onnxruntime", "numba", "colour_demosaicing", "pywt", "cv2"):
    try:
        module = importlib.import_module(name)
        print(f"python: {name} {getattr(module, '__version__', '')}")
    except Exception as exc:  # a missing optional package only costs its operator's reference rows
        print(f"python: {name} missing ({type(exc).__name__}: {exc})")
import cv2
print(f"python: cv2.ximgproc {'present' if hasattr(cv2, 'ximgproc') else 'missing (dehaze.dark_channel reference)'}")
EOF
}

main() {
  say "gpu_session: dry run $dry, $seconds s from $(date -d @"$start" +%H:%M:%S), out $out"
  local began=$(date +%s)
  setup || { say "setup failed"; return 1; }
  say "setup: $(( $(date +%s) - began )) s"
  { nvidia-smi 2>&1; "$python" -V; PYTHONPATH=$site "$python" -m pip list 2>/dev/null; } > "$out/env.txt"
  [[ $dry == 1 ]] || export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}  # a dry run keeps its own environment
  local args=(--out "$out" --work "$work/builds" --deadline $((deadline - 15)) --train "${FIP_GPU_TRAIN-smooth.l0}"
              --train-extra="${FIP_GPU_TRAIN_ARGS:-}" --skip "${FIP_GPU_SKIP:-}")
  [[ -n ${FIP_GPU_OPERATORS:-} ]] && args+=(--operators "$FIP_GPU_OPERATORS")
  [[ $dry == 1 ]] && args+=(--dry-run)
  timeout -k 5 $((deadline - $(date +%s) - 5)) "$python" benchmarks/gpu_session.py "${args[@]}"
  local code=$?
  say "gpu_session.py exited with $code after $(( $(date +%s) - start )) s"
  ls -la "$out"
  return $code
}

main 2>&1 | tee "$out/session.log"
