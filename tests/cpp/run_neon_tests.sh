#!/usr/bin/env bash
# Cross-compiles megq's C++ kernel tests (test_gemm_kernels, test_conv_kernels:
# conv2d on the GEMM kernels, depthwise; test_ops_kernels: quantize,
# elementwise, pooling) for AArch64 and runs them under qemu
# user-mode emulation, twice:
#   -cpu cortex-a72  ARMv8.0, no dot product: tests the scalar and neon paths
#   -cpu max         every feature qemu knows: also the neondot (sdot) path
# The binary is linked statically, so qemu needs no AArch64 sysroot.
#
# Needs (installed by CI, not by this script):
#   apt-get install -y g++-aarch64-linux-gnu qemu-user cmake
#
# Usage: tests/cpp/run_neon_tests.sh [extra test_gemm_kernels arguments]
# Environment: BUILD_DIR (default build-cpp-aarch64 in the repository root).
# The last line printed is the combined "N passed, M failed".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-cpp-aarch64}"

missing=()
for tool in aarch64-linux-gnu-g++ qemu-aarch64 cmake; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "run_neon_tests.sh: missing ${missing[*]}" >&2
  echo "  install with: apt-get install -y g++-aarch64-linux-gnu qemu-user cmake" >&2
  exit 2
fi

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

start=$SECONDS
cmake -S "$ROOT/tests/cpp" -B "$BUILD_DIR" "${generator[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$ROOT/tests/cpp/aarch64-toolchain.cmake" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" --parallel "$(nproc)"
echo "build: $((SECONDS - start)) s"

total_passed=0
total_failed=0
run() {  # run <qemu cpu> <required ISAs> <binary> [arguments...]
  local cpu="$1" require="$2" binary="$3" log rc=0
  log="$(mktemp)"
  echo "== qemu-aarch64 -cpu $cpu $binary (must test: $require)"
  local t0=$SECONDS
  qemu-aarch64 -cpu "$cpu" "$BUILD_DIR/$binary" --require="$require" "${@:4}" | tee "$log" || rc=$?
  echo "   ($((SECONDS - t0)) s, exit $rc)"
  local last
  last="$(tail -n 1 "$log")"
  rm -f "$log"
  if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    total_passed=$((total_passed + BASH_REMATCH[1]))
    total_failed=$((total_failed + BASH_REMATCH[2]))
    # A non-zero exit with no failure counted (a crash) still counts as one.
    if ((rc != 0 && BASH_REMATCH[2] == 0)); then total_failed=$((total_failed + 1)); fi
  else
    total_failed=$((total_failed + 1))
  fi
}

run cortex-a72 scalar,neon test_gemm_kernels "$@"
run max scalar,neon,neondot test_gemm_kernels "$@"
run cortex-a72 scalar,neon test_conv_kernels --cases=1000
run max scalar,neon,neondot test_conv_kernels --cases=1000
run cortex-a72 scalar,neon test_ops_kernels --cases=300
run max scalar,neon,neondot test_ops_kernels --cases=300

echo "aarch64 total: $((SECONDS - start)) s"
echo "$total_passed passed, $total_failed failed"
((total_failed == 0))
