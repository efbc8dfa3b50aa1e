#!/usr/bin/env bash
# Runs megq's C++ kernel tests (GEMM, conv2d / depthwise, quantize / elementwise / pooling) natively on x86-64 with the AVX-512 VNNI
# kernel compiled against SIMDe (SIMD Everywhere) instead of real AVX-512:
# csrc/megq/kernels/avx512vnni/*.cc is built without -mavx512* flags, with
# tests/cpp/simde_shim/immintrin.h in front of the system <immintrin.h>, and
# megq is told (MEGQ_ASSUME_AVX512VNNI_CPU, test builds only) that the CPU has
# AVX-512 VNNI. This checks the VNNI kernel's logic bit-exactly (packing,
# sign flip, tails, masks, epilogue) on a CPU without AVX-512. The scalar and
# AVX2 paths are tested in the same run. Needs an AVX2 CPU (the emulated
# kernel still uses native AVX2 where SIMDe can).
#
# Needs (installed by CI, not by this script):
#   apt-get install -y libsimde-dev cmake g++
#
# Usage: tests/cpp/run_vnni_emulated_tests.sh [extra test_gemm_kernels arguments]
# (test_conv_kernels runs with its defaults).
# Environment: BUILD_DIR (default build-cpp-vnni-emulated in the repository root).
# The last line printed is "N passed, M failed".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-cpp-vnni-emulated}"

for tool in cmake g++; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run_vnni_emulated_tests.sh: missing $tool (apt-get install -y cmake g++)" >&2
    exit 2
  fi
done
if [[ ! -f /usr/include/simde/x86/avx512.h ]]; then
  echo "run_vnni_emulated_tests.sh: SIMDe headers not found (apt-get install -y libsimde-dev)" >&2
  exit 2
fi
if [[ "$(uname -m)" != "x86_64" ]] || ! grep -qw avx2 /proc/cpuinfo; then
  echo "run_vnni_emulated_tests.sh: needs an x86-64 CPU with AVX2" >&2
  exit 2
fi

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

start=$SECONDS
cmake -S "$ROOT/tests/cpp" -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DMEGQ_EMULATE_AVX512VNNI=ON >/dev/null
cmake --build "$BUILD_DIR" --parallel "$(nproc)"
echo "build: $((SECONDS - start)) s"

# Safety net: the emulated objects must hold no AVX-512 instruction (they
# would die with SIGILL here, or worse, test the wrong thing where they did not).
objs="$(find "$BUILD_DIR" -path '*megq_avx512vnni.dir*' -name '*_avx512vnni.cc.o')"
for name in gemm_avx512vnni.cc.o depthwise_avx512vnni.cc.o elementwise_avx512vnni.cc.o pooling_avx512vnni.cc.o; do
  if ! grep -q "/$name\$" <<<"$objs"; then
    echo "run_vnni_emulated_tests.sh: $name not found in $BUILD_DIR" >&2
    exit 1
  fi
done
if command -v objdump >/dev/null 2>&1; then
  for obj in $objs; do
    if objdump -d "$obj" | grep -Eq '%zmm|%k[0-7]'; then
      echo "run_vnni_emulated_tests.sh: $obj contains AVX-512 instructions" >&2
      exit 1
    fi
  done
fi

total_passed=0
total_failed=0
run() {  # run <binary> <arguments...>
  local log rc=0
  log="$(mktemp)"
  echo "== $(basename "$1")"
  local t0=$SECONDS
  "$@" | tee "$log" || rc=$?
  echo "   ($((SECONDS - t0)) s, exit $rc)"
  local last
  last="$(tail -n 1 "$log")"
  rm -f "$log"
  if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    total_passed=$((total_passed + BASH_REMATCH[1]))
    total_failed=$((total_failed + BASH_REMATCH[2]))
    if ((rc != 0 && BASH_REMATCH[2] == 0)); then total_failed=$((total_failed + 1)); fi
  else
    total_failed=$((total_failed + 1))
  fi
}

run "$BUILD_DIR/test_gemm_kernels" --require=scalar,avx2,avx512vnni "$@"
run "$BUILD_DIR/test_conv_kernels" --require=scalar,avx2,avx512vnni --cases=1000
run "$BUILD_DIR/test_ops_kernels" --require=scalar,avx2,avx512vnni

echo "total: $((SECONDS - start)) s"
echo "$total_passed passed, $total_failed failed"
((total_failed == 0))
