// HighwayHash shim for SSE4.1 (used only when the CPU supports it).
#pragma GCC target("sse4.1")
#define HH_TARGET_NAME SSE41
#define PP_HH128 pp_hh128_sse41
#define PP_HH64 pp_hh64_sse41
#include "hh_shim.h"
