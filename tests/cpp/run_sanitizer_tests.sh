#!/usr/bin/env bash
# Builds megq's C++ kernel testers with sanitizers and runs them natively:
#   1. AddressSanitizer + UndefinedBehaviorSanitizer (-fno-sanitize-recover=all,
#      so the first report fails the run): test_gemm_kernels (smaller cube),
#      test_conv_kernels and test_ops_kernels, every ISA this CPU runs,
#      MEGQ_DCHECK enabled;
#   2. ThreadSanitizer: test_thread_stress (GEMM, conv2d and depthwise called
#      from several threads while another changes the pool's thread count).
# Takes a few minutes on two cores (mostly the two builds).
#
# Needs (installed by CI, not by this script): apt-get install -y cmake g++
#
# Usage: tests/cpp/run_sanitizer_tests.sh
# Environment: BUILD_DIR_ASAN, BUILD_DIR_TSAN (default build-cpp-asan,
# build-cpp-tsan in the repository root).
# The last line printed is the combined "N passed, M failed".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR_ASAN="${BUILD_DIR_ASAN:-$ROOT/build-cpp-asan}"
BUILD_DIR_TSAN="${BUILD_DIR_TSAN:-$ROOT/build-cpp-tsan}"

for tool in cmake g++; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run_sanitizer_tests.sh: missing $tool (apt-get install -y cmake g++)" >&2
    exit 2
  fi
done

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

# -O1 keeps the sanitized kernels fast enough while the reports stay exact.
# The build log is shown only if the build fails (GCC's own intrinsics headers
# warn under -O1).
build() {  # build <dir> <sanitizers> <targets...>
  local dir="$1" san="$2" log
  shift 2
  log="$(mktemp)"
  if ! { cmake -S "$ROOT/tests/cpp" -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
           -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DMEGQ_SANITIZE="$san" &&
         cmake --build "$dir" --parallel "$(nproc)" --target "$@"; } >"$log" 2>&1; then
    cat "$log"
    rm -f "$log"
    echo "run_sanitizer_tests.sh: the $san build failed" >&2
    exit 1
  fi
  rm -f "$log"
}

total_passed=0
total_failed=0
run() {  # run <label> <command...>
  local label="$1" log rc=0
  shift
  log="$(mktemp)"
  echo "== $label"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$log" | tail -n 12 || rc=${PIPESTATUS[0]}
  echo "   ($((SECONDS - t0)) s, exit $rc)"
  local last
  last="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)"
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$log"; then
    echo "   sanitizer report:"
    grep -E -A 12 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$log" | head -n 40
    rc=1
  fi
  rm -f "$log"
  if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    total_passed=$((total_passed + BASH_REMATCH[1]))
    total_failed=$((total_failed + BASH_REMATCH[2]))
    if ((rc != 0 && BASH_REMATCH[2] == 0)); then total_failed=$((total_failed + 1)); fi
  else
    total_failed=$((total_failed + 1))
  fi
}

start=$SECONDS
build "$BUILD_DIR_ASAN" address,undefined test_gemm_kernels test_conv_kernels test_ops_kernels
build "$BUILD_DIR_TSAN" thread test_thread_stress
echo "build: $((SECONDS - start)) s"

# halt_on_error: the first report ends the run with a non-zero exit; the guard
# pages of the testers are the testers' own mmap, which ASan leaves alone.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
run "ASan+UBSan test_gemm_kernels --cube=20" "$BUILD_DIR_ASAN/test_gemm_kernels" --cube=20
run "ASan+UBSan test_conv_kernels --cases=600" "$BUILD_DIR_ASAN/test_conv_kernels" --cases=600
run "ASan+UBSan test_ops_kernels" "$BUILD_DIR_ASAN/test_ops_kernels"
run "TSan test_thread_stress" "$BUILD_DIR_TSAN/test_thread_stress" --rounds=20

echo "sanitizers total: $((SECONDS - start)) s"
echo "$total_passed passed, $total_failed failed"
((total_failed == 0))
