# Builds the static library megq_kernels from csrc/megq: baseline sources plus
# one OBJECT library per ISA, each compiled with its own flags only.
# Also used on its own (without Python) by tests/cpp/CMakeLists.txt for the
# cross-compiled NEON test binary.

get_filename_component(MEGQ_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)

# -ffp-contract=off: GCC fuses a*b+c into FMA when an ISA allows it, which
# would make the float requantization differ from the numpy contract.
# No -ffast-math anywhere: rounding and NaN handling must follow IEEE.
set(MEGQ_COMMON_FLAGS -ffp-contract=off -fno-math-errno)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  list(APPEND MEGQ_COMMON_FLAGS -Wall -Wextra -Wno-unused-parameter)
endif()

file(GLOB MEGQ_BASE_SOURCES CONFIGURE_DEPENDS
     ${MEGQ_ROOT}/csrc/megq/*.cc ${MEGQ_ROOT}/csrc/megq/kernels/scalar/*.cc)
add_library(megq_kernels STATIC ${MEGQ_BASE_SOURCES})
target_include_directories(megq_kernels PUBLIC ${MEGQ_ROOT}/csrc)
target_compile_options(megq_kernels PRIVATE ${MEGQ_COMMON_FLAGS})
find_package(Threads REQUIRED)
target_link_libraries(megq_kernels PUBLIC Threads::Threads)

# megq_add_isa(<name> <DEFINE> <flags...>): compile csrc/megq/kernels/<name>/*.cc
# with <flags> if the compiler accepts them, and tell the dispatcher.
function(megq_add_isa name define)
  set(flags ${ARGN})
  string(REPLACE ";" " " flag_string "${flags}")
  set(CMAKE_REQUIRED_FLAGS "${flag_string}")
  check_cxx_compiler_flag("${flag_string}" MEGQ_COMPILER_HAS_${define})
  unset(CMAKE_REQUIRED_FLAGS)
  file(GLOB sources CONFIGURE_DEPENDS ${MEGQ_ROOT}/csrc/megq/kernels/${name}/*.cc)
  if(MEGQ_COMPILER_HAS_${define} AND sources)
    add_library(megq_${name} OBJECT ${sources})
    target_include_directories(megq_${name} PRIVATE ${MEGQ_ROOT}/csrc)
    target_compile_options(megq_${name} PRIVATE ${MEGQ_COMMON_FLAGS} ${flags})
    target_sources(megq_kernels PRIVATE $<TARGET_OBJECTS:megq_${name}>)
    target_compile_definitions(megq_kernels PRIVATE MEGQ_BUILT_${define}=1)
    message(STATUS "megq: building ${name} kernels with ${flag_string}")
  else()
    message(STATUS "megq: not building ${name} kernels")
  endif()
endfunction()

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  megq_add_isa(avx2 AVX2 -mavx2 -mfma -mf16c)
  megq_add_isa(avx512vnni AVX512VNNI -mavx2 -mfma -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64|ARM64")
  megq_add_isa(neon NEON -march=armv8-a)
  megq_add_isa(neondot NEONDOT -march=armv8.2-a+dotprod)
endif()
