# CMake toolchain file: cross-compile megq's C++ tests for AArch64 Linux with
# Debian's g++-aarch64-linux-gnu. Binaries are linked statically so that
# qemu-aarch64 runs them without an AArch64 sysroot (tests/cpp/run_neon_tests.sh).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(MEGQ_AARCH64_PREFIX aarch64-linux-gnu- CACHE STRING "Cross toolchain prefix")
set(CMAKE_C_COMPILER ${MEGQ_AARCH64_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${MEGQ_AARCH64_PREFIX}g++)

set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")

# Look for libraries and headers only in the target's locations.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
