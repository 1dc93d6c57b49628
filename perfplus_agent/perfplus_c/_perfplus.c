/*
 * _perfplus: the Perf+ dirty-page filter's C core (module definition and free functions).
 * Per-page work runs here over whole batches with the GIL released; Python never loops
 * over pages.  Filter lives in py_filter.c, RamRewriter in py_rewriter.c.
 */
#include "pymodule.h"

#include <errno.h>
#include <sys/random.h>

#define PERFPLUS_ABI 3

PyObject *pp_UnsupportedStream;

int pp_py_algorithm(const char *name)
{
    int alg = pp_alg_lookup(name);
    if (alg < 0)
        PyErr_Format(PyExc_ValueError, "unknown algorithm '%s' (known: highwayhash, siphash, "
                     "md5)", name);
    return alg;
}

static PyObject *perfplus_key_size(PyObject *module, PyObject *args)
{
    const char *name;
    (void)module;

    if (!PyArg_ParseTuple(args, "s:key_size", &name))
        return NULL;
    int alg = pp_py_algorithm(name);
    return alg < 0 ? NULL : PyLong_FromSize_t(pp_key_size(alg));
}

static PyObject *perfplus_new_key(PyObject *module, PyObject *args)
{
    const char *name;
    (void)module;

    if (!PyArg_ParseTuple(args, "s:new_key", &name))
        return NULL;
    int alg = pp_py_algorithm(name);
    if (alg < 0)
        return NULL;
    size_t n = pp_key_size(alg);
    PyObject *key = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (key == NULL)
        return NULL;
    for (size_t got = 0; got < n;) {
        ssize_t r = getrandom(PyBytes_AS_STRING(key) + got, n - got, 0);
        if (r < 0 && errno != EINTR) {
            Py_DECREF(key);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (r > 0)
            got += (size_t)r;
    }
    return key;
}

/* Hashes n consecutive blocks of `unit` bytes into 16-byte raw hashes. */
static PyObject *hash_units(const char *name, Py_buffer *key, Py_buffer *data, Py_ssize_t unit)
{
    pp_hasher h;
    int alg = pp_py_algorithm(name);

    if (alg < 0)
        return NULL;
    if (pp_hasher_init(&h, alg, key->buf, (size_t)key->len) < 0)
        return PyErr_Format(PyExc_ValueError, "%s needs a %zu-byte key, got %zd bytes", name,
                            pp_key_size(alg), key->len);
    Py_ssize_t n = unit ? data->len / unit : 1;
    if (unit && data->len % unit != 0)
        return PyErr_Format(PyExc_ValueError, "pages must be a multiple of %u bytes, got %zd",
                            PP_PAGE_SIZE, data->len);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)PP_TAG_SIZE);
    if (out == NULL)
        return NULL;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    const uint8_t *d = data->buf;
    Py_ssize_t len = unit ? unit : data->len;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        failed |= pp_hash(&h, d + i * len, (size_t)len, o + i * (Py_ssize_t)PP_TAG_SIZE);
    Py_END_ALLOW_THREADS
    if (failed) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    return out;
}

static PyObject *perfplus_hash_pages(PyObject *module, PyObject *args)
{
    const char *name;
    Py_buffer key, pages;
    (void)module;

    if (!PyArg_ParseTuple(args, "sy*y*:hash_pages", &name, &key, &pages))
        return NULL;
    PyObject *out = hash_units(name, &key, &pages, PP_PAGE_SIZE);
    PyBuffer_Release(&key);
    PyBuffer_Release(&pages);
    return out;
}

static PyObject *perfplus_hash_bytes(PyObject *module, PyObject *args)
{
    const char *name;
    Py_buffer key, data;
    (void)module;

    if (!PyArg_ParseTuple(args, "sy*y*:_hash_bytes", &name, &key, &data))
        return NULL;
    PyObject *out = hash_units(name, &key, &data, 0);
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return out;
}

static PyObject *perfplus_highwayhash(PyObject *module, PyObject *args)
{
    const char *target;
    Py_buffer key, data;
    int bits;
    PyObject *out = NULL;
    pp_hh64_fn fn64;
    uint64_t k[4];
    (void)module;

    if (!PyArg_ParseTuple(args, "y*y*si:_highwayhash", &key, &data, &target, &bits))
        return NULL;
    pp_hh128_fn fn128 = pp_hh128_for(target, &fn64);
    if (key.len != 32 || (bits != 64 && bits != 128 && bits != 0)) {
        PyErr_SetString(PyExc_ValueError, "need a 32-byte key and bits 64, 128 or 0 (library)");
        goto out;
    }
    if (fn128 == NULL && bits != 0) {
        PyErr_Format(PyExc_ValueError, "HighwayHash target '%s' unavailable", target);
        goto out;
    }
    for (int i = 0; i < 4; i++) {
        k[i] = 0;
        for (int b = 7; b >= 0; b--)
            k[i] = (k[i] << 8) | ((const uint8_t *)key.buf)[8 * i + b];
    }
    if (bits == 128) {
        uint8_t r[16];
        fn128(k, data.buf, (size_t)data.len, r);
        out = PyBytes_FromStringAndSize((const char *)r, 16);
    } else {
        out = PyLong_FromUnsignedLongLong(bits == 64 ? fn64(k, data.buf, (size_t)data.len) :
                                          pp_hh64_library(k, data.buf, (size_t)data.len));
    }
out:
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return out;
}

static PyObject *perfplus_copy_pages(PyObject *module, PyObject *args)
{
    Py_buffer dst, src;
    (void)module;

    if (!PyArg_ParseTuple(args, "w*y*:copy_pages", &dst, &src))
        return NULL;
    PyObject *result = NULL;
    if (dst.len != src.len) {
        PyErr_Format(PyExc_ValueError, "dst has %zd bytes, src %zd", dst.len, src.len);
    } else {
        Py_BEGIN_ALLOW_THREADS
        memcpy(dst.buf, src.buf, (size_t)src.len);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    return result;
}

static PyMethodDef perfplus_methods[] = {
    {"key_size", perfplus_key_size, METH_VARARGS, "key_size(algorithm) -> int"},
    {"new_key", perfplus_new_key, METH_VARARGS, "new_key(algorithm) -> bytes (getrandom)"},
    {"hash_pages", perfplus_hash_pages, METH_VARARGS,
     "hash_pages(algorithm, key, pages) -> 16 raw hash bytes per 4096-byte page"},
    {"copy_pages", perfplus_copy_pages, METH_VARARGS,
     "copy_pages(dst, src): memcpy without the GIL (the benchmark's reference)"},
    {"_hash_bytes", perfplus_hash_bytes, METH_VARARGS,
     "_hash_bytes(algorithm, key, data) -> 16 raw hash bytes of data (any length)"},
    {"_highwayhash", perfplus_highwayhash, METH_VARARGS,
     "_highwayhash(key, data, target, bits): one shim's HighwayHash (bits 64/128), or the "
     "library's compiled HighwayHash64 (bits 0); for tests"},
    {NULL, NULL, 0, NULL},
};

static int add_type(PyObject *module, PyTypeObject *type, const char *name)
{
    if (PyType_Ready(type) < 0)
        return -1;
    return PyModule_AddObjectRef(module, name, (PyObject *)type);
}

static int perfplus_exec(PyObject *module)
{
    if (pp_hashes_init() < 0) {
        PyErr_SetString(PyExc_ImportError, "libsodium or OpenSSL MD5 initialisation failed");
        return -1;
    }
    if (PyModule_AddIntConstant(module, "PAGE_SIZE", PP_PAGE_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "TAG_SIZE", PP_TAG_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "ABI", PERFPLUS_ABI) < 0 ||
        PyModule_AddIntConstant(module, "NEED_MORE", 0) < 0 ||
        PyModule_AddIntConstant(module, "EOS", 1) < 0 ||
        PyModule_AddIntConstant(module, "UNSUPPORTED", 2) < 0 ||
        PyModule_AddIntConstant(module, "MALFORMED", 3) < 0 ||
        PyModule_AddStringConstant(module, "DEFAULT_ALGORITHM", pp_alg_name(PP_HIGHWAYHASH)) < 0 ||
        PyModule_AddStringConstant(module, "HIGHWAYHASH_TARGET", pp_hh_target()) < 0)
        return -1;
    PyObject *algs = Py_BuildValue("(sss)", pp_alg_name(0), pp_alg_name(1), pp_alg_name(2));
    if (algs == NULL || PyModule_AddObject(module, "ALGORITHMS", algs) < 0) {
        Py_XDECREF(algs);
        return -1;
    }
    if (pp_UnsupportedStream == NULL) {
        pp_UnsupportedStream = PyErr_NewExceptionWithDoc(
            "perfplus_agent.perfplus_c._perfplus.UnsupportedStream",
            "A migration stream this filter cannot handle safely.", PyExc_ValueError, NULL);
        if (pp_UnsupportedStream == NULL)
            return -1;
    }
    if (PyModule_AddObjectRef(module, "UnsupportedStream", pp_UnsupportedStream) < 0 ||
        add_type(module, &pp_FilterType, "Filter") < 0 ||
        add_type(module, &pp_RamRewriterType, "RamRewriter") < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot perfplus_slots[] = {
    {Py_mod_exec, perfplus_exec},
    {0, NULL},
};

PyDoc_STRVAR(perfplus_doc, "Perf+ dirty-page filter core (C extension).");

static struct PyModuleDef perfplus_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "perfplus_agent.perfplus_c._perfplus",
    .m_doc = perfplus_doc,
    .m_size = 0,
    .m_methods = perfplus_methods,
    .m_slots = perfplus_slots,
};

PyMODINIT_FUNC
PyInit__perfplus(void)
{
    return PyModuleDef_Init(&perfplus_module);
}
