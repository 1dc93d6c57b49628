// HighwayHash shim without SIMD requirements (the fallback on any CPU).
#define HH_TARGET_NAME Portable
#define PP_HH128 pp_hh128_portable
#define PP_HH64 pp_hh64_portable
#include "hh_shim.h"
