#!/usr/bin/env bash
# The GPU benchmarks of the atlas issue, prepared as one call of the device tool (its machine has
# PyTorch with CUDA on Python 3.12 but none of anndata, scanpy, captum and their needs, and no
# network). Two steps:
#
#   1. here, where pip reaches the registry (about 15 MB, into .whl/, which git ignores locally):
#        echo /.whl/ >> .git/info/exclude; bash benchmarks/gpu.sh wheels
#   2. on the device machine, carry [".whl"], timeout_s 600 (the run keeps to about 8 minutes):
#        bash benchmarks/gpu.sh run
#      It installs the wheels into /tmp/site, writes the 1M x 2,000 file, runs benchmarks/scale.py
#      at 1M cells (train 10 MLPs + attribute + rankings, from the backed file, device="auto") and
#      benchmarks/attribute.py (10 MLPs, Captum in the same run), and leaves the tables in $OUT.
#      Copy them to benchmarks/results/*_gpu.* with the device's name.
#
#   bash benchmarks/gpu.sh check   # step 2's commands at a small size, on this machine (CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-}
wheels=(anndata==0.12.19 scanpy==1.11.5 captum==0.9.0 mudata==0.3.10 zarr==3.1.6 numcodecs==0.16.6
        donfig==0.8.1.post1 google-crc32c==1.9.0 array-api-compat==1.16.0 legacy-api-wrap==1.5
        natsort==8.4.0 pynndescent==0.7.0 umap-learn==0.5.12 session-info2==0.4.1)
case "$step" in
wheels)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${wheels[@]}"
  du -sh .whl
  ;;
run | check)
  out=${OUT:-/tmp/scxl_gpu_out}
  mkdir -p "$out"
  if [ "$step" = run ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src
    sizes=1000000 genes=2000,20000 cells_large=1000 budget=420
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
  else
    sizes=10000 genes=2000 cells_large=100 budget=300
  fi
  export PYTHONUNBUFFERED=1
  python3 -c "import torch, scxl; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'scxl', scxl.__version__)"
  # scale first (the issue's target: 1M x 2,000 x 10 models attributed in < 60 s), within a budget
  # so that the attribution table still runs when the file or the training takes longer than planned
  timeout "$budget" python3 benchmarks/scale.py --sizes "$sizes" --dir /tmp/scxl_scale \
    --out "$out/scale.md" 2>&1 | tee "$out/scale.log" || echo "scale.py stopped (status $?)"
  timeout 150 python3 benchmarks/attribute.py --genes "$genes" --n-cells-large "$cells_large" --repeat 2 \
    --methods saliency,deeplift,deeplift_shap,deeplift_shap_dense 2>&1 | tee "$out/attribute.txt" \
    || echo "attribute.py stopped (status $?)"
  ;;
*)
  echo "usage: bash benchmarks/gpu.sh wheels|run|check" >&2
  exit 2
  ;;
esac
