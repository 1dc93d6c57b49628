/*
 * Body of one HighwayHash shim translation unit: the library's own templates
 * (HHStateT / HighwayHashT) instantiated for HH_TARGET_NAME, exported with C
 * linkage as PP_HH128 / PP_HH64.  Included once per target by hh_<target>.cc,
 * after the target's #pragma GCC target.
 */
#include <stdint.h>
#include <string.h>

#include "highwayhash/highwayhash.h"
#include "hashes.h"

extern "C" void PP_HH128(const uint64_t key[4], const void *data, size_t len, uint8_t out[16])
{
    highwayhash::HHKey k;
    memcpy(k, key, sizeof k);
    highwayhash::HHStateT<HH_TARGET> state(k);
    highwayhash::HHResult128 result;
    highwayhash::HighwayHashT(&state, static_cast<const char *>(data), len, &result);
    memcpy(out, result, sizeof result);
}

extern "C" uint64_t PP_HH64(const uint64_t key[4], const void *data, size_t len)
{
    highwayhash::HHKey k;
    memcpy(k, key, sizeof k);
    highwayhash::HHStateT<HH_TARGET> state(k);
    highwayhash::HHResult64 result;
    highwayhash::HighwayHashT(&state, static_cast<const char *>(data), len, &result);
    return result;
}
