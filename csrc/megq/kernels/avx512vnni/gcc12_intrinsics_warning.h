// Included (after <immintrin.h>) by the AVX-512 translation units whose zero-extend and
// down-convert intrinsics trip GCC 12: it reports the _mm512_undefined_*
// operands inside its own intrinsic headers as "maybe uninitialized" (GCC bug
// 105593, fixed in GCC 13). The warning says nothing about megq's code, so it is
// silenced for the rest of such a file (the pragma is not scoped to this header).
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
