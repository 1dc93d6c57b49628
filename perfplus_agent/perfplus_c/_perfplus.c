/*
 * _perfplus: the Perf+ dirty-page filter's C core.
 *
 * This module is deliberately small for now: it is wired into the build so
 * that the package always ships a compiled core, and it exports the page
 * geometry the stream parser relies on.  The batch hash and filter entry
 * points are added by the Perf+ filter work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PERFPLUS_PAGE_SIZE 4096
#define PERFPLUS_TAG_SIZE 16
#define PERFPLUS_ABI 1

static int
perfplus_exec(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "PAGE_SIZE", PERFPLUS_PAGE_SIZE) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "TAG_SIZE", PERFPLUS_TAG_SIZE) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "ABI", PERFPLUS_ABI) < 0)
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
    .m_slots = perfplus_slots,
};

PyMODINIT_FUNC
PyInit__perfplus(void)
{
    return PyModuleDef_Init(&perfplus_module);
}
