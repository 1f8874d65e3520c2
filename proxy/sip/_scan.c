/*
 * proxy/sip/_scan.c: the header-line scan of proxy/sip/message.py in C.
 *
 * How this works: scan_headers(buf, pos, hend, fast) does exactly what the
 * common path of message._scan_headers does. The header block buf[pos:hend]
 * is cut into lines at each CRLF (RFC 3261 section 7.3.1); the name of each
 * line (the octets before its first colon) is looked up in `fast`, the dict
 * of remembered wire spellings; for every line whose spelling maps to a
 * non-empty canonical name, (value start, line end) is appended to
 * result[canonical]. The moment a line has no colon, an empty name, or a
 * spelling that is not in `fast`, the function returns None and the caller
 * runs the Python scan, which validates the name, detects folding, answers
 * errors and remembers new spellings. So the C scan only ever answers for
 * blocks the Python scan would index the same way (tests/unit/
 * test_sip_cscan.py compares both), and it never raises for bad input.
 *
 * Every read stays inside buf[pos:hend] (both clamped to len(buf)).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *
scan_headers(PyObject *self, PyObject *args)
{
    PyObject *buf_obj, *fast;
    Py_ssize_t pos, hend;
    if (!PyArg_ParseTuple(args, "SnnO!", &buf_obj, &pos, &hend, &PyDict_Type, &fast))
        return NULL;
    const char *buf = PyBytes_AS_STRING(buf_obj);
    Py_ssize_t n = PyBytes_GET_SIZE(buf_obj);
    if (pos < 0 || hend > n || pos > hend)
        Py_RETURN_NONE;
    PyObject *result = PyDict_New();
    if (result == NULL)
        return NULL;
    Py_ssize_t start = pos;
    for (;;) {
        /* the end of this line: the next CRLF before hend, else hend */
        Py_ssize_t end = hend;
        const char *p = buf + start;
        const char *limit = buf + hend;
        while (p < limit) {
            const char *cr = memchr(p, '\r', (size_t)(limit - p));
            if (cr == NULL)
                break;
            if (cr + 1 < limit && cr[1] == '\n') {
                end = cr - buf;
                break;
            }
            p = cr + 1;
        }
        const char *colon = memchr(buf + start, ':', (size_t)(end - start));
        if (colon == NULL || colon == buf + start)
            goto fallback;
        Py_ssize_t name_len = colon - (buf + start);
        PyObject *spelling = PyBytes_FromStringAndSize(buf + start, name_len);
        if (spelling == NULL)
            goto error;
        PyObject *canon = PyDict_GetItemWithError(fast, spelling); /* borrowed */
        Py_DECREF(spelling);
        if (canon == NULL) {
            if (PyErr_Occurred())
                goto error;
            goto fallback;
        }
        if (!PyBytes_Check(canon))
            goto fallback;
        if (PyBytes_GET_SIZE(canon) > 0) {
            PyObject *span = Py_BuildValue("(nn)", start + name_len + 1, end);
            if (span == NULL)
                goto error;
            PyObject *lst = PyDict_GetItemWithError(result, canon); /* borrowed */
            if (lst == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(span);
                    goto error;
                }
                lst = PyList_New(1);
                if (lst == NULL) {
                    Py_DECREF(span);
                    goto error;
                }
                PyList_SET_ITEM(lst, 0, span); /* steals span */
                if (PyDict_SetItem(result, canon, lst) < 0) {
                    Py_DECREF(lst);
                    goto error;
                }
                Py_DECREF(lst);
            } else {
                int rc = PyList_Append(lst, span);
                Py_DECREF(span);
                if (rc < 0)
                    goto error;
            }
        }
        if (end >= hend)
            break;
        start = end + 2;
    }
    return result;

fallback:
    Py_DECREF(result);
    Py_RETURN_NONE;
error:
    Py_DECREF(result);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan_headers", scan_headers, METH_VARARGS,
     "scan_headers(buf, pos, hend, fast) -> dict | None: message._scan_headers in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scan", "The header-line scan of proxy/sip/message.py in C.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModule_Create(&module);
}
