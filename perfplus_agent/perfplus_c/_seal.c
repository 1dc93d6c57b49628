/*
 * _seal: AES-256-GCM frames for the Perf+ daemon's secure channel (OpenSSL libcrypto, EVP).
 *
 *   seal(key32, nonce12, data, length_prefix=False) -> [be32 length ||] ciphertext || tag16
 *   open(key32, nonce12, data) -> plaintext, ValueError if authentication fails
 *
 * No associated data; the caller's nonce discipline (a per-direction counter) is what makes
 * reordering and replay fail authentication.  The GIL is released around each frame.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <openssl/evp.h>

#define SEAL_KEY_SIZE 32
#define SEAL_NONCE_SIZE 12
#define SEAL_TAG_SIZE 16

/* Run one GCM operation; returns 1 on success, 0 on failure (including a bad tag). */
static int
gcm_run(int encrypt, const unsigned char *key, const unsigned char *nonce,
        const unsigned char *in, int in_len, unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, ok = 0;

    if (ctx == NULL)
        return 0;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) != 1)
        goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_SIZE, NULL) != 1)
        goto done;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, encrypt) != 1)
        goto done;
    if (in_len > 0 && EVP_CipherUpdate(ctx, out, &len, in, in_len) != 1)
        goto done;
    if (!encrypt && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_SIZE, tag) != 1)
        goto done;
    if (EVP_CipherFinal_ex(ctx, out + len, &len) != 1)
        goto done;
    if (encrypt && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_SIZE, tag) != 1)
        goto done;
    ok = 1;
done:
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

static int
check_sizes(const Py_buffer *key, const Py_buffer *nonce)
{
    if (key->len != SEAL_KEY_SIZE) {
        PyErr_SetString(PyExc_ValueError, "key must be 32 bytes");
        return 0;
    }
    if (nonce->len != SEAL_NONCE_SIZE) {
        PyErr_SetString(PyExc_ValueError, "nonce must be 12 bytes");
        return 0;
    }
    return 1;
}

/* With length_prefix, the frame's be32 length (ciphertext + tag) comes first, so that a
 * frame is one buffer and one send. */
static PyObject *
seal_seal(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"key", "nonce", "data", "length_prefix", NULL};
    Py_buffer key, nonce, data;
    PyObject *result = NULL;
    int ok, length_prefix = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*y*|p:seal", kwlist, &key, &nonce,
                                     &data, &length_prefix))
        return NULL;
    if (!check_sizes(&key, &nonce))
        goto out;
    if (data.len > INT_MAX - SEAL_TAG_SIZE - 4) {
        PyErr_SetString(PyExc_OverflowError, "frame too large");
        goto out;
    }
    Py_ssize_t prefix = length_prefix ? 4 : 0;
    result = PyBytes_FromStringAndSize(NULL, prefix + data.len + SEAL_TAG_SIZE);
    if (result == NULL)
        goto out;
    {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        if (prefix) {
            uint32_t n = (uint32_t)(data.len + SEAL_TAG_SIZE);
            out[0] = (unsigned char)(n >> 24);
            out[1] = (unsigned char)(n >> 16);
            out[2] = (unsigned char)(n >> 8);
            out[3] = (unsigned char)n;
            out += prefix;
        }
        Py_BEGIN_ALLOW_THREADS
        ok = gcm_run(1, key.buf, nonce.buf, data.buf, (int)data.len, out, out + data.len);
        Py_END_ALLOW_THREADS
    }
    if (!ok) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_RuntimeError, "AES-GCM encryption failed");
    }
out:
    PyBuffer_Release(&key);
    PyBuffer_Release(&nonce);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *
seal_open(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer key, nonce, data;
    PyObject *result = NULL;
    Py_ssize_t plain_len;
    int ok;

    if (!PyArg_ParseTuple(args, "y*y*y*:open", &key, &nonce, &data))
        return NULL;
    if (!check_sizes(&key, &nonce))
        goto out;
    if (data.len < SEAL_TAG_SIZE) {
        PyErr_SetString(PyExc_ValueError, "frame authentication failed");
        goto out;
    }
    if (data.len > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "frame too large");
        goto out;
    }
    plain_len = data.len - SEAL_TAG_SIZE;
    result = PyBytes_FromStringAndSize(NULL, plain_len);
    if (result == NULL)
        goto out;
    {
        unsigned char *in = data.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        ok = gcm_run(0, key.buf, nonce.buf, in, (int)plain_len, out, in + plain_len);
        Py_END_ALLOW_THREADS
    }
    if (!ok) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_ValueError, "frame authentication failed");
    }
out:
    PyBuffer_Release(&key);
    PyBuffer_Release(&nonce);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef seal_methods[] = {
    {"seal", (PyCFunction)(void (*)(void))seal_seal, METH_VARARGS | METH_KEYWORDS,
     "seal(key, nonce, data, length_prefix=False) -> [be32 length +] ciphertext + 16-byte "
     "tag (AES-256-GCM)."},
    {"open", seal_open, METH_VARARGS,
     "open(key, nonce, data) -> plaintext; ValueError if authentication fails."},
    {NULL, NULL, 0, NULL},
};

static int
seal_exec(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "KEY_SIZE", SEAL_KEY_SIZE) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "NONCE_SIZE", SEAL_NONCE_SIZE) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "TAG_SIZE", SEAL_TAG_SIZE) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot seal_slots[] = {
    {Py_mod_exec, seal_exec},
    {0, NULL},
};

PyDoc_STRVAR(seal_doc, "AES-256-GCM frame sealing for the Perf+ daemon (OpenSSL libcrypto).");

static struct PyModuleDef seal_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "perfplus_agent.perfplus_c._seal",
    .m_doc = seal_doc,
    .m_size = 0,
    .m_methods = seal_methods,
    .m_slots = seal_slots,
};

PyMODINIT_FUNC
PyInit__seal(void)
{
    return PyModuleDef_Init(&seal_module);
}
