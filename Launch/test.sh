#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Launch/setup.sh
# Several MPI ranks may share this machine in tests: one BLAS thread each.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Tests compare records of different layouts and batch sizes bit for bit: `--gemm auto` keeps to the
# batch-invariant kernels (ours) there. The kernel tests exercise every candidate, OpenBLAS and oneDNN too.
export PALIGEMMA_BATCH_INVARIANT=1
# The kernel choice the tests measure (under the load of parallel tests) stays out of the user's cache.
PALIGEMMA_CACHE_DIR="$(mktemp -d)"
export PALIGEMMA_CACHE_DIR
trap 'rm -rf "$PALIGEMMA_CACHE_DIR"' EXIT
swift build --build-tests
swift test --skip-build "$@"
