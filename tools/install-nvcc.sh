#!/usr/bin/env bash
# Installs nvcc 13.0 from the Python package registry into .venv-nvcc when no
# nvcc is found (see README). Pinned to 13.0: a newer nvcc writes PTX that the
# 580 driver (CUDA 13.0) refuses to load. Prints the nvcc path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

find_nvcc() {
  for c in "${NVCC:-}" "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" "${CUDA_PATH:+$CUDA_PATH/bin/nvcc}" \
           "$(command -v nvcc || true)" .venv-nvcc/lib/python3*/site-packages/nvidia/cu13/bin/nvcc; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}

if nvcc=$(find_nvcc); then
  echo "nvcc found: $nvcc" >&2
  echo "$nvcc"
  exit 0
fi

echo "no nvcc found: installing nvcc 13.0 into .venv-nvcc (about 300 MB)" >&2
python3 -m venv .venv-nvcc
.venv-nvcc/bin/pip install --quiet --disable-pip-version-check \
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 >&2
nvcc=$(find_nvcc) || { echo "nvcc install failed: no nvcc under .venv-nvcc" >&2; exit 1; }
"$nvcc" --version >&2
echo "$nvcc"
