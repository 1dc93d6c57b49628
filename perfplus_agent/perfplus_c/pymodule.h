/* Declarations shared by the Python-facing files of the _perfplus module. */
#ifndef PP_PYMODULE_H
#define PP_PYMODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "filter.h"

typedef struct {
    PyObject_HEAD
    pp_filter *f;
} FilterObject;

extern PyTypeObject pp_FilterType;
extern PyTypeObject pp_RamRewriterType;
extern PyObject *pp_UnsupportedStream;

/* Parses an algorithm name; sets ValueError and returns -1 if unknown. */
int pp_py_algorithm(const char *name);

#endif
