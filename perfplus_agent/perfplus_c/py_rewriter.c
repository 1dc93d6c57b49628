/* Python type RamRewriter: the main channel's RAM records through a Filter. */
#include "pymodule.h"

#include "ramrewriter.h"

typedef struct {
    PyObject_HEAD
    FilterObject *filter;
    pp_rewriter r;
    int busy; /* a feed() runs without the GIL: a second concurrent one is refused */
} RamRewriterObject;

static PyObject *RamRewriter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"filter", "postcopy_page_size", "ignore_shared", NULL};
    PyObject *filter;
    int postcopy_page_size = 0, ignore_shared = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|$pp:RamRewriter", kwlist, &pp_FilterType,
                                     &filter, &postcopy_page_size, &ignore_shared))
        return NULL;
    RamRewriterObject *self = (RamRewriterObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->filter = (FilterObject *)Py_NewRef(filter);
    pp_rewriter_init(&self->r, self->filter->f, postcopy_page_size, ignore_shared);
    return (PyObject *)self;
}

static void RamRewriter_dealloc(RamRewriterObject *self)
{
    Py_XDECREF(self->filter);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Output room for one call: every insertion of an idstr but the first is paid for by a
 * dropped page record that named a block, so len + 256 always suffices. */
#define OUT_SLACK 256

static PyObject *RamRewriter_feed(RamRewriterObject *self, PyObject *arg)
{
    Py_buffer in;
    PyObject *chunks = NULL, *out = NULL, *result = NULL;
    size_t pos = 0;
    int status;

    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "RamRewriter.feed is already running");
        PyBuffer_Release(&in);
        return NULL;
    }
    self->busy = 1;
    chunks = PyList_New(0);
    if (chunks == NULL)
        goto out;
    do {
        size_t left = (size_t)in.len - pos, consumed, produced;
        PyObject *chunk = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(left + OUT_SLACK));
        if (chunk == NULL)
            goto out;
        Py_BEGIN_ALLOW_THREADS
        pp_filter_lock(self->r.filter);
        status = pp_rewriter_feed(&self->r, (const uint8_t *)in.buf + pos, left,
                                  (uint8_t *)PyBytes_AS_STRING(chunk), left + OUT_SLACK,
                                  &consumed, &produced);
        pp_filter_unlock(self->r.filter);
        Py_END_ALLOW_THREADS
        pos += consumed;
        if (_PyBytes_Resize(&chunk, (Py_ssize_t)produced) < 0 ||
            PyList_Append(chunks, chunk) < 0) {
            Py_XDECREF(chunk);
            goto out;
        }
        Py_DECREF(chunk);
    } while (status == PP_OUT_FULL);
    if (PyList_GET_SIZE(chunks) == 1) {
        out = Py_NewRef(PyList_GET_ITEM(chunks, 0));
    } else {
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        if (empty == NULL)
            goto out;
        out = _PyBytes_Join(empty, chunks);
        Py_DECREF(empty);
        if (out == NULL)
            goto out;
    }
    result = Py_BuildValue("(Nni)", out, (Py_ssize_t)pos, status);
out:
    self->busy = 0;
    Py_XDECREF(chunks);
    PyBuffer_Release(&in);
    return result;
}

static PyObject *RamRewriter_get_diverged(RamRewriterObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->r.last_src != self->r.last_emitted);
}

static PyObject *RamRewriter_get_counters(RamRewriterObject *self, void *closure)
{
    (void)closure;
    PyObject *d = PyDict_New();

    for (int i = 0; d != NULL && i < PP_NCOUNTERS; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(self->r.counters[i]);
        if (v == NULL || PyDict_SetItemString(d, pp_counter_names[i], v) < 0)
            Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

static PyObject *RamRewriter_get_error(RamRewriterObject *self, void *closure)
{
    (void)closure;
    if (self->r.why[0] == '\0')
        Py_RETURN_NONE;
    /* idstrs from the stream need not be UTF-8 */
    return PyUnicode_DecodeUTF8(self->r.why, (Py_ssize_t)strlen(self->r.why), "backslashreplace");
}

static PyObject *RamRewriter_get_filter(RamRewriterObject *self, void *closure)
{
    (void)closure;
    return Py_NewRef((PyObject *)self->filter);
}

static PyMethodDef RamRewriter_methods[] = {
    {"feed", (PyCFunction)RamRewriter_feed, METH_O,
     "feed(data) -> (out, consumed, status): rewrite the complete records at data's start."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef RamRewriter_getset[] = {
    {"diverged", (getter)RamRewriter_get_diverged, NULL,
     "True when the source's last named block differs from the last block emitted.", NULL},
    {"counters", (getter)RamRewriter_get_counters, NULL, "Cumulative counters.", NULL},
    {"last_error", (getter)RamRewriter_get_error, NULL,
     "Why the last UNSUPPORTED or MALFORMED status was returned, or None.", NULL},
    {"filter", (getter)RamRewriter_get_filter, NULL, "The Filter this rewriter uses.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject pp_RamRewriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "perfplus_agent.perfplus_c._perfplus.RamRewriter",
    .tp_basicsize = sizeof(RamRewriterObject),
    .tp_dealloc = (destructor)RamRewriter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("RamRewriter(filter, *, postcopy_page_size=False, ignore_shared=False)"
                        ": the main channel's RAM records of one migration."),
    .tp_methods = RamRewriter_methods,
    .tp_getset = RamRewriter_getset,
    .tp_new = RamRewriter_new,
};
