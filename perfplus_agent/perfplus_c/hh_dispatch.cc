// Which HighwayHash targets this CPU supports, as the library itself decides.
#include "highwayhash/instruction_sets.h"
#include "hashes.h"

extern "C" unsigned pp_hh_supported(void)
{
    return highwayhash::InstructionSets::Supported();
}
