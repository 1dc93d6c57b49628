/* Page hashes: keyed HighwayHash-128 (default), SipHash-x24 (libsodium), MD5 (OpenSSL). */
#ifndef PP_HASHES_H
#define PP_HASHES_H

#include "pp_common.h"

enum pp_alg { PP_HIGHWAYHASH = 0, PP_SIPHASH = 1, PP_MD5 = 2, PP_NALG = 3 };

typedef struct pp_hasher {
    int alg;
    uint64_t hh_key[4];        /* HighwayHash key, little-endian words of the 32 key bytes */
    unsigned char sip_key[16]; /* libsodium siphashx24 key */
} pp_hasher;

/* One HighwayHash-128 implementation (a C++ shim per instruction set). */
typedef void (*pp_hh128_fn)(const uint64_t key[4], const void *data, size_t len, uint8_t out[16]);
typedef uint64_t (*pp_hh64_fn)(const uint64_t key[4], const void *data, size_t len);

#ifdef __cplusplus
extern "C" {
#endif
void pp_hh128_avx2(const uint64_t key[4], const void *data, size_t len, uint8_t out[16]);
void pp_hh128_sse41(const uint64_t key[4], const void *data, size_t len, uint8_t out[16]);
void pp_hh128_portable(const uint64_t key[4], const void *data, size_t len, uint8_t out[16]);
uint64_t pp_hh64_avx2(const uint64_t key[4], const void *data, size_t len);
uint64_t pp_hh64_sse41(const uint64_t key[4], const void *data, size_t len);
uint64_t pp_hh64_portable(const uint64_t key[4], const void *data, size_t len);
/* Bit set of HH_TARGET_* the CPU supports (highwayhash::InstructionSets::Supported). */
unsigned pp_hh_supported(void);
#ifdef __cplusplus
}
#endif

/* Chooses the HighwayHash target and initialises libsodium/OpenSSL; 0 on success. */
int pp_hashes_init(void);
/* Name of the HighwayHash implementation in use ("AVX2", "SSE41" or "Portable"). */
const char *pp_hh_target(void);
/* Looks a target up by name for tests; NULL if unknown or unsupported by this CPU. */
pp_hh128_fn pp_hh128_for(const char *target, pp_hh64_fn *fn64);

const char *pp_alg_name(int alg);
int pp_alg_lookup(const char *name); /* -1 if unknown */
size_t pp_key_size(int alg);
/* 0 on success, -1 if the key has the wrong size. */
int pp_hasher_init(pp_hasher *h, int alg, const uint8_t *key, size_t keylen);
/* The raw 16-byte hash of data (any length); 0 on success, -1 if the library failed (MD5
 * may allocate). Thread-safe. */
int pp_hash(const pp_hasher *h, const void *data, size_t len, uint8_t out[16]);
/* HighwayHash64 from the library's own compiled C binding (for cross-checks). */
uint64_t pp_hh64_library(const uint64_t key[4], const void *data, size_t len);

#endif
