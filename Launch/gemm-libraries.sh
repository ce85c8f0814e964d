#!/usr/bin/env bash
# The model's matrix products through each GEMM library on this machine, side by side (GFLOP/s):
# our packed kernels, OpenBLAS's sgemm and oneDNN's f32 matmul, at M = 1, 8, 64 and 256 rows.
# The evaluation behind docs/performance.md's "GEMM libraries" section; `paligemma bench` does the
# same comparison in-process for the measured kernel choice (--gemm auto).
#
#   Launch/gemm-libraries.sh [THREADS] [SHAPE-SUBSTRING]
#
# Needs gcc, libopenblas-dev and libdnnl-dev (Launch/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-$(nproc)}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
gcc -O3 -mavx2 -mfma -mf16c -fopenmp -ISources/CKernels/include Launch/gemm_libraries.c Sources/CKernels/gemm.c Sources/CKernels/gemm_i8.c Sources/CKernels/onednn.c \
    -lopenblas -ldnnl -o "$OUT/gemm-libraries"
grep -m1 "model name" /proc/cpuinfo >&2 || true
OMP_NUM_THREADS="$THREADS" "$OUT/gemm-libraries" "$THREADS" ${2:+"$2"}
