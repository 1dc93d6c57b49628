/* Page hashes from maintained libraries: HighwayHash (libhighwayhash templates through the
 * C++ shims), SipHash-x24 (libsodium), MD5 (OpenSSL libcrypto). */
#include "hashes.h"

#include <highwayhash/c_bindings.h>
#include <openssl/evp.h>
#include <sodium.h>

#define HH_BIT_PORTABLE 1u /* HH_TARGET_Portable */
#define HH_BIT_SSE41 2u    /* HH_TARGET_SSE41 */
#define HH_BIT_AVX2 4u     /* HH_TARGET_AVX2 */

static pp_hh128_fn hh128 = pp_hh128_portable;
static const char *hh_target = "Portable";
static EVP_MD *md5_md;

static const char *const alg_names[PP_NALG] = {"highwayhash", "siphash", "md5"};
static const size_t alg_key_sizes[PP_NALG] = {32, crypto_shorthash_siphashx24_KEYBYTES, 0};

int pp_hashes_init(void)
{
    unsigned supported = pp_hh_supported();

    if (supported & HH_BIT_AVX2) {
        hh128 = pp_hh128_avx2;
        hh_target = "AVX2";
    } else if (supported & HH_BIT_SSE41) {
        hh128 = pp_hh128_sse41;
        hh_target = "SSE41";
    }
    if (sodium_init() < 0)
        return -1;
    if (md5_md == NULL)
        md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
    return md5_md == NULL ? -1 : 0;
}

const char *pp_hh_target(void)
{
    return hh_target;
}

pp_hh128_fn pp_hh128_for(const char *target, pp_hh64_fn *fn64)
{
    unsigned supported = pp_hh_supported();

    if (strcmp(target, "AVX2") == 0 && (supported & HH_BIT_AVX2)) {
        *fn64 = pp_hh64_avx2;
        return pp_hh128_avx2;
    }
    if (strcmp(target, "SSE41") == 0 && (supported & HH_BIT_SSE41)) {
        *fn64 = pp_hh64_sse41;
        return pp_hh128_sse41;
    }
    if (strcmp(target, "Portable") == 0) {
        *fn64 = pp_hh64_portable;
        return pp_hh128_portable;
    }
    return NULL;
}

const char *pp_alg_name(int alg)
{
    return alg >= 0 && alg < PP_NALG ? alg_names[alg] : "?";
}

int pp_alg_lookup(const char *name)
{
    for (int i = 0; i < PP_NALG; i++)
        if (strcmp(name, alg_names[i]) == 0)
            return i;
    return -1;
}

size_t pp_key_size(int alg)
{
    return alg_key_sizes[alg];
}

int pp_hasher_init(pp_hasher *h, int alg, const uint8_t *key, size_t keylen)
{
    memset(h, 0, sizeof *h);
    if (alg < 0 || alg >= PP_NALG || keylen != alg_key_sizes[alg])
        return -1;
    h->alg = alg;
    if (alg == PP_HIGHWAYHASH) {
        for (int i = 0; i < 4; i++) {
            uint64_t w = 0;
            for (int b = 7; b >= 0; b--)
                w = (w << 8) | key[8 * i + b];
            h->hh_key[i] = w;
        }
    } else if (alg == PP_SIPHASH) {
        memcpy(h->sip_key, key, sizeof h->sip_key);
    }
    return 0;
}

int pp_hash(const pp_hasher *h, const void *data, size_t len, uint8_t out[16])
{
    switch (h->alg) {
    case PP_HIGHWAYHASH:
        hh128(h->hh_key, data, len, out);
        return 0;
    case PP_SIPHASH:
        return crypto_shorthash_siphashx24(out, data, len, h->sip_key) == 0 ? 0 : -1;
    default: {
        unsigned int n = 16;
        return EVP_Digest(data, len, out, &n, md5_md, NULL) ? 0 : -1;
    }
    }
}

uint64_t pp_hh64_library(const uint64_t key[4], const void *data, size_t len)
{
    return HighwayHash64(key, data, len);
}
