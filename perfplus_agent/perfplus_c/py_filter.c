/* Python type Filter: the per-session tag tables, batch filtering and multifd packets. */
#include "pymodule.h"

#include "multifd.h"

static PyObject *Filter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"algorithm", "key", "dropping", NULL};
    const char *algorithm;
    Py_buffer key;
    int dropping = 1;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sy*|$p:Filter", kwlist, &algorithm, &key,
                                     &dropping))
        return NULL;
    int alg = pp_py_algorithm(algorithm);
    if (alg < 0)
        goto fail;
    if ((size_t)key.len != pp_key_size(alg)) {
        PyErr_Format(PyExc_ValueError, "%s needs a %zu-byte key, got %zd bytes", algorithm,
                     pp_key_size(alg), key.len);
        goto fail;
    }
    FilterObject *self = (FilterObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        goto fail;
    self->f = PyMem_RawMalloc(sizeof *self->f);
    if (self->f == NULL || pp_filter_init(self->f, alg, key.buf, (size_t)key.len, dropping) != PP_OK) {
        PyMem_RawFree(self->f);
        self->f = NULL;
        Py_DECREF(self);
        PyErr_NoMemory();
        goto fail;
    }
    PyBuffer_Release(&key);
    return (PyObject *)self;
fail:
    PyBuffer_Release(&key);
    return NULL;
}

static void Filter_dealloc(FilterObject *self)
{
    if (self->f != NULL) {
        pp_filter_destroy(self->f);
        PyMem_RawFree(self->f);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Filter_add_block(FilterObject *self, PyObject *args)
{
    Py_buffer id;
    unsigned long long length;
    int index = -1;

    if (!PyArg_ParseTuple(args, "y*K:add_block", &id, &length))
        return NULL;
    int rc = pp_filter_add_block(self->f, id.buf, (size_t)id.len, length, 0, &index);
    PyBuffer_Release(&id);
    switch (rc) {
    case PP_OK:
        return PyLong_FromLong(index);
    case PP_ERR_DUPLICATE:
        return PyErr_Format(PyExc_ValueError, "block already registered");
    case PP_ERR_ARGUMENT:
        return PyErr_Format(PyExc_ValueError,
                            "idstr must have 1..255 bytes and length must be > 0");
    case PP_ERR_FULL:
        return PyErr_Format(PyExc_ValueError, "at most %d blocks", PP_MAX_BLOCKS);
    default:
        return PyErr_NoMemory();
    }
}

static PyObject *Filter_block_index(FilterObject *self, PyObject *arg)
{
    Py_buffer id;

    if (PyObject_GetBuffer(arg, &id, PyBUF_SIMPLE) < 0)
        return NULL;
    int index = pp_filter_find(self->f, id.buf, (size_t)id.len);
    PyBuffer_Release(&id);
    return PyLong_FromLong(index);
}

static PyObject *Filter_get_blocks(FilterObject *self, void *closure)
{
    (void)closure;
    int n = pp_filter_count(self->f);
    PyObject *list = PyList_New(n);

    for (int i = 0; list != NULL && i < n; i++) {
        pp_block *b = pp_filter_block(self->f, i);
        PyObject *item = Py_BuildValue("(y#K)", b->idstr, (Py_ssize_t)b->idlen,
                                       (unsigned long long)b->length);
        if (item == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *Filter_get_memory_bytes(FilterObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(
        __atomic_load_n(&self->f->memory_bytes, __ATOMIC_RELAXED));
}

static PyObject *Filter_get_dropping(FilterObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->f->dropping);
}

/* From now on never drop a page.  Taken under the page lock: once this returns, no batch of
 * any channel is half-way with dropping still on. */
static PyObject *Filter_stop_dropping(FilterObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_BEGIN_ALLOW_THREADS
    pp_filter_lock(self->f);
    self->f->dropping = 0;
    pp_filter_unlock(self->f);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* The block of a call, or NULL with ValueError set. */
static pp_block *block_arg(FilterObject *self, int block)
{
    pp_block *b = pp_filter_block(self->f, block);
    if (b == NULL)
        PyErr_Format(PyExc_ValueError, "no block with index %d", block);
    return b;
}

/* Index of the first bad offset, or -1 when all lie inside b and are page aligned. */
static Py_ssize_t first_bad_offset(const pp_block *b, const uint8_t *offsets, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (!pp_block_offset_ok(b, pp_be64(offsets + 8 * i)))
            return i;
    return -1;
}

static PyObject *bad_offset_error(const pp_block *b, const uint8_t *offsets, Py_ssize_t i)
{
    return PyErr_Format(PyExc_ValueError,
                        "offset %zd (0x%llx) is misaligned or outside block '%s' (0x%llx bytes)",
                        i, (unsigned long long)pp_be64(offsets + 8 * i), b->idstr,
                        (unsigned long long)b->length);
}

/* The stamp of a call's channel and interval, or -1 with ValueError set. */
static int stamp_arg(unsigned int channel, unsigned long long interval)
{
    if (channel >= PP_MAX_MULTIFD_CHANNELS && channel != PP_CHANNEL_MAIN) {
        PyErr_Format(PyExc_ValueError, "channel must be 0..%u (multifd) or %u (main), not %u",
                     PP_MAX_MULTIFD_CHANNELS - 1, PP_CHANNEL_MAIN, channel);
        return -1;
    }
    return pp_stamp(channel, interval);
}

static PyObject *Filter_filter(FilterObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"block", "offsets", "pages", "channel", "interval", NULL};
    int block;
    unsigned int channel = 0;
    unsigned long long interval = 0;
    Py_buffer offs, pages;
    PyObject *mask = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iy*y*|$IK:filter", kwlist, &block, &offs,
                                     &pages, &channel, &interval))
        return NULL;
    int stamp = stamp_arg(channel, interval);
    if (stamp < 0)
        goto out;
    pp_block *b = block_arg(self, block);
    if (b == NULL)
        goto out;
    Py_ssize_t n = offs.len / 8;
    if (offs.len % 8 != 0 || pages.len != n * (Py_ssize_t)PP_PAGE_SIZE) {
        PyErr_Format(PyExc_ValueError, "need n be64 offsets and n*4096 bytes of pages, got %zd "
                     "and %zd bytes", offs.len, pages.len);
        goto out;
    }
    mask = PyBytes_FromStringAndSize(NULL, n);
    if (mask == NULL)
        goto out;
    uint8_t *m = (uint8_t *)PyBytes_AS_STRING(mask);
    const uint8_t *o = offs.buf, *pg = pages.buf;
    Py_ssize_t bad;
    Py_BEGIN_ALLOW_THREADS
    bad = first_bad_offset(b, o, n);
    if (bad < 0) {
        pp_filter_lock(self->f);
        for (Py_ssize_t i = 0; i < n; i++) {
            int same;
            m[i] = (uint8_t)pp_filter_page(self->f, b, pp_be64(o + 8 * i),
                                           pg + i * (Py_ssize_t)PP_PAGE_SIZE, (uint8_t)stamp,
                                           &same);
        }
        pp_filter_unlock(self->f);
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        Py_CLEAR(mask);
        bad_offset_error(b, o, bad);
    }
out:
    PyBuffer_Release(&offs);
    PyBuffer_Release(&pages);
    return mask;
}

static PyObject *Filter_invalidate(FilterObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"block", "offsets", "channel", "interval", NULL};
    int block;
    unsigned int channel = PP_CHANNEL_MAIN;
    unsigned long long interval = 0;
    Py_buffer offs;
    PyObject *result = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iy*|$IK:invalidate", kwlist, &block, &offs,
                                     &channel, &interval))
        return NULL;
    int stamp = stamp_arg(channel, interval);
    if (stamp < 0)
        goto out;
    pp_block *b = block_arg(self, block);
    if (b == NULL)
        goto out;
    if (offs.len % 8 != 0) {
        PyErr_Format(PyExc_ValueError, "offsets must be be64 values, got %zd bytes", offs.len);
        goto out;
    }
    Py_ssize_t n = offs.len / 8, bad = first_bad_offset(b, offs.buf, n);
    if (bad >= 0) {
        bad_offset_error(b, offs.buf, bad);
        goto out;
    }
    pp_filter_lock(self->f);
    for (Py_ssize_t i = 0; i < n; i++)
        pp_block_invalidate(b, pp_be64((const uint8_t *)offs.buf + 8 * i), (uint8_t)stamp);
    pp_filter_unlock(self->f);
    result = Py_NewRef(Py_None);
out:
    PyBuffer_Release(&offs);
    return result;
}

static PyObject *Filter_invalidate_all(FilterObject *self, PyObject *unused)
{
    (void)unused;
    Py_BEGIN_ALLOW_THREADS
    pp_filter_invalidate_all(self->f);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *Filter_filter_multifd(FilterObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"packet", "payload", "channel", "interval", NULL};
    unsigned int channel = 0;
    unsigned long long interval = 0;
    Py_buffer pkt, payload;
    PyObject *new_pkt = NULL, *kept_payload = NULL, *result = NULL;
    pp_multifd_packet p;
    char why[256];
    pp_block *b = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*|$IK:filter_multifd", kwlist, &pkt,
                                     &payload, &channel, &interval))
        return NULL;
    int stamp = stamp_arg(channel, interval);
    if (stamp < 0)
        goto out;
    if (pp_multifd_parse(pkt.buf, (size_t)pkt.len, (size_t)payload.len, &p, why, sizeof why)) {
        PyErr_Format(pp_UnsupportedStream, "%s", why); /* %s decodes with "replace" */
        goto out;
    }
    if (p.normal_pages > 0) {
        int bi = pp_filter_find(self->f, p.ramblock, p.ramblock_len);
        if (bi < 0) {
            PyErr_Format(pp_UnsupportedStream, "multifd packet for unknown block '%s'",
                         p.ramblock);
            goto out;
        }
        b = pp_filter_block(self->f, bi);
        if (pp_multifd_check_offsets(pkt.buf, &p, b, why, sizeof why)) {
            PyErr_Format(pp_UnsupportedStream, "%s", why); /* %s decodes with "replace" */
            goto out;
        }
    }
    new_pkt = PyBytes_FromStringAndSize(NULL, pkt.len);
    kept_payload = PyBytes_FromStringAndSize(NULL, payload.len);
    if (new_pkt == NULL || kept_payload == NULL)
        goto out;
    uint32_t kept, unchanged;
    Py_BEGIN_ALLOW_THREADS
    pp_filter_lock(self->f);
    kept = pp_multifd_filter(self->f, b, pkt.buf, (size_t)pkt.len, &p, payload.buf,
                             (uint8_t *)PyBytes_AS_STRING(new_pkt),
                             (uint8_t *)PyBytes_AS_STRING(kept_payload), (uint8_t)stamp,
                             &unchanged);
    pp_filter_unlock(self->f);
    Py_END_ALLOW_THREADS
    if (_PyBytes_Resize(&kept_payload, (Py_ssize_t)kept * PP_PAGE_SIZE) < 0)
        goto out;
    result = Py_BuildValue("(OOIII)", new_pkt, kept_payload, kept, p.normal_pages - kept,
                           unchanged);
out:
    Py_XDECREF(new_pkt);
    Py_XDECREF(kept_payload);
    PyBuffer_Release(&pkt);
    PyBuffer_Release(&payload);
    return result;
}

static PyMethodDef Filter_methods[] = {
    {"stop_dropping", (PyCFunction)Filter_stop_dropping, METH_NOARGS,
     "stop_dropping(): forward every page from now on (waits for batches in progress)."},
    {"add_block", (PyCFunction)Filter_add_block, METH_VARARGS,
     "add_block(idstr, length) -> int: register a RAMBlock, return its index."},
    {"block_index", (PyCFunction)Filter_block_index, METH_O,
     "block_index(idstr) -> int: index of a registered block, -1 if unknown."},
    {"filter", (PyCFunction)(void (*)(void))Filter_filter, METH_VARARGS | METH_KEYWORDS,
     "filter(block, offsets, pages, *, channel=0, interval=0) -> bytes: keep mask (1 forward, "
     "0 drop) of a batch carried by that channel in that interval."},
    {"invalidate", (PyCFunction)(void (*)(void))Filter_invalidate, METH_VARARGS | METH_KEYWORDS,
     "invalidate(block, offsets, *, channel=15, interval=0): forget the tags of these pages."},
    {"invalidate_all", (PyCFunction)Filter_invalidate_all, METH_NOARGS,
     "invalidate_all(): forget every tag."},
    {"filter_multifd", (PyCFunction)(void (*)(void))Filter_filter_multifd,
     METH_VARARGS | METH_KEYWORDS,
     "filter_multifd(packet, payload, *, channel=0, interval=0) -> (packet, payload, kept, "
     "dropped, unchanged)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Filter_getset[] = {
    {"blocks", (getter)Filter_get_blocks, NULL, "Registered blocks as (idstr, length).", NULL},
    {"memory_bytes", (getter)Filter_get_memory_bytes, NULL, "Bytes held by all tag tables.",
     NULL},
    {"dropping", (getter)Filter_get_dropping, NULL,
     "False for a measuring filter: tags kept, unchanged pages counted but forwarded.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject pp_FilterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "perfplus_agent.perfplus_c._perfplus.Filter",
    .tp_basicsize = sizeof(FilterObject),
    .tp_dealloc = (destructor)Filter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Filter(algorithm, key, *, dropping=True): the tag tables of one "
                        "migration session (dropping=False: measure only, never drop)."),
    .tp_methods = Filter_methods,
    .tp_getset = Filter_getset,
    .tp_new = Filter_new,
};
