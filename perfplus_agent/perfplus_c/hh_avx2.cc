// HighwayHash shim for AVX2 (used only when the CPU supports it).
#pragma GCC target("avx2")
#define HH_TARGET_NAME AVX2
#define PP_HH128 pp_hh128_avx2
#define PP_HH64 pp_hh64_avx2
#include "hh_shim.h"
