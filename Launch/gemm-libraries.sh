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
# Our kernels are compiled by clang, as `swift build` compiles them: gcc does not unroll the micro-kernels'
# row loops and keeps their accumulators in memory (AMD Zen 3, AVX2 kernel at M = 256: 52-65 GFLOP/s built
# by gcc 12, 145-170 by clang). The driver itself needs OpenMP (gcc's libgomp, as oneDNN uses).
CC_KERNELS="$(command -v clang || echo gcc)"
for f in gemm gemm_i8; do
    "$CC_KERNELS" -O3 -mavx2 -mfma -mf16c -ISources/CKernels/include -c "Sources/CKernels/$f.c" -o "$OUT/$f.o"
done
gcc -O3 -mavx2 -mfma -mf16c -fopenmp -ISources/CKernels/include Launch/gemm_libraries.c "$OUT/gemm.o" "$OUT/gemm_i8.o" Sources/CKernels/onednn.c \
    -lopenblas -ldnnl -o "$OUT/gemm-libraries"
grep -m1 "model name" /proc/cpuinfo >&2 || true
OMP_NUM_THREADS="$THREADS" "$OUT/gemm-libraries" "$THREADS" ${2:+"$2"}
