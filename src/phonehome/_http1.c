/* phonehome._http1: an HTTP/1 request's header section split in one call, in C.
 *
 * The same as http1.split_head in phonehome/protocols/http1.py, which stays the reference and
 * the fallback when this module is not built: find the end of a header section that is wholly
 * buffered, parse its request line as http1._parse_request_line does, and split its field lines
 * as http1._usual_fields does (None for the fields when a line has another shape, or there are
 * more than the parser keeps), with the framing fields' values beside them.
 *
 * Every read is bounds-checked against the buffer's length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_METHOD 32

static unsigned char TCHAR[256], WS[256];

static void
init_classes(void)
{
    /* RFC 9110 §5.6.2 token characters, and the whitespace a lenient request line allows. */
    const char *tchar = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (const char *c = tchar; *c; c++)
        TCHAR[(unsigned char)*c] = 1;
    for (const char *c = " \t\x0b\x0c\r"; *c; c++)
        WS[(unsigned char)*c] = 1;
}

static Py_ssize_t
find(const unsigned char *p, Py_ssize_t n, const char *what, Py_ssize_t len)
{
    for (Py_ssize_t i = 0; i + len <= n; i++) {
        const unsigned char *at = memchr(p + i, what[0], (size_t)(n - len + 1 - i));
        if (at == NULL)
            return -1;
        i = at - p;
        if (memcmp(at, what, (size_t)len) == 0)
            return i;
    }
    return -1;
}

/* http1._parse_request_line on p[0:n] (its line end removed): 1 with the method, target and
 * version ("1.x") spans set, 0 when it is not a request line. */
static int
request_line(const unsigned char *p, Py_ssize_t n, Py_ssize_t *method_end, Py_ssize_t *target_start,
             Py_ssize_t *target_end, Py_ssize_t *version_start)
{
    Py_ssize_t m = 0;
    while (m < n && TCHAR[p[m]])
        m++;
    if (m == 0 || m > MAX_METHOD || m == n || !WS[p[m]])
        return 0;
    Py_ssize_t rest = m;
    while (rest < n && WS[p[rest]])
        rest++;
    Py_ssize_t last = n;
    while (last > rest && WS[p[last - 1]])
        last--;
    if (last - rest <= 8)
        return 0;
    const unsigned char *v = p + last - 8;
    if (memcmp(v, "HTTP/1.", 7) != 0 || v[7] < '0' || v[7] > '9' || !WS[p[last - 9]])
        return 0;
    Py_ssize_t t_end = last - 8;
    while (t_end > rest && WS[p[t_end - 1]])
        t_end--;
    if (t_end == rest)
        return 0;
    *method_end = m;
    *target_start = rest;
    *target_end = t_end;
    *version_start = last - 3;
    return 1;
}

static int
lower_equals(const unsigned char *p, Py_ssize_t n, const char *lower)
{
    Py_ssize_t len = (Py_ssize_t)strlen(lower);
    if (n != len)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

static int
append_bytes(PyObject *list, const unsigned char *p, Py_ssize_t n)
{
    PyObject *b = PyBytes_FromStringAndSize((const char *)p, n);
    if (b == NULL)
        return -1;
    int rc = PyList_Append(list, b);
    Py_DECREF(b);
    return rc;
}

/* http1._usual_fields on p[start:end] (each line ending in LF): 1 with the lists filled, 0 when a
 * line has another shape or there are more than `max_headers`, -1 on a Python error. */
static int
usual_fields(const unsigned char *p, Py_ssize_t start, Py_ssize_t end, Py_ssize_t max_headers, PyObject *headers,
             PyObject *lengths, PyObject *transfer, PyObject *content)
{
    Py_ssize_t count = 0;
    while (start < end) {
        const unsigned char *nl = memchr(p + start, '\n', (size_t)(end - start));
        Py_ssize_t stop = nl ? nl - p : end; /* the section ends in LF: nl is never NULL */
        Py_ssize_t line_end = stop;
        if (line_end > start && p[line_end - 1] == '\r')
            line_end--;
        if (p[start] == ' ' || p[start] == '\t')
            return 0; /* obs-fold */
        const unsigned char *colon = memchr(p + start, ':', (size_t)(line_end - start));
        if (colon == NULL)
            return 0;
        Py_ssize_t name_end = colon - p;
        while (name_end > start && (p[name_end - 1] == ' ' || p[name_end - 1] == '\t'))
            name_end--;
        if (name_end == start)
            return 0;
        Py_ssize_t v = colon - p + 1, v_end = line_end;
        while (v < v_end && (p[v] == ' ' || p[v] == '\t'))
            v++;
        while (v_end > v && (p[v_end - 1] == ' ' || p[v_end - 1] == '\t'))
            v_end--;
        if (++count > max_headers)
            return 0;
        PyObject *pair = Py_BuildValue("(y#y#)", (const char *)p + start, name_end - start, (const char *)p + v,
                                       v_end - v);
        if (pair == NULL)
            return -1;
        int rc = PyList_Append(headers, pair);
        Py_DECREF(pair);
        if (rc < 0)
            return -1;
        const unsigned char *name = p + start;
        Py_ssize_t len = name_end - start;
        PyObject *into = lower_equals(name, len, "content-length")      ? lengths
                         : lower_equals(name, len, "transfer-encoding") ? transfer
                         : lower_equals(name, len, "content-encoding")  ? content
                                                                        : NULL;
        if (into != NULL && append_bytes(into, p + v, v_end - v) < 0)
            return -1;
        start = stop + 1;
    }
    return 1;
}

static PyObject *
split_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "split_head(buf, avail, max_header_bytes, max_headers)");
        return NULL;
    }
    Py_ssize_t avail = PyLong_AsSsize_t(args[1]), max_bytes = PyLong_AsSsize_t(args[2]),
               max_headers = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = view.buf;
    PyObject *result = NULL, *headers = NULL, *lengths = NULL, *transfer = NULL, *content = NULL;
    Py_ssize_t limit = avail < max_bytes ? avail : max_bytes;
    if (limit > view.len)
        limit = view.len;
    if (limit < 0)
        limit = 0;
    Py_ssize_t crlf = find(p, limit, "\n\r\n", 3), lf = find(p, limit, "\n\n", 2);
    if (crlf < 0 && lf < 0)
        goto none;
    Py_ssize_t blank = (lf < 0 || (crlf >= 0 && crlf < lf)) ? crlf + 1 : lf + 1;
    Py_ssize_t end = blank + (blank == crlf + 1 ? 2 : 1);
    if (end > limit)
        goto none;
    const unsigned char *nl = memchr(p, '\n', (size_t)end);
    Py_ssize_t first = nl - p; /* the section holds an LF */
    Py_ssize_t line = first > 0 && p[first - 1] == '\r' ? first - 1 : first;
    Py_ssize_t method_end, target_start, target_end, version_start;
    if (!request_line(p, line, &method_end, &target_start, &target_end, &version_start))
        goto none;
    headers = PyList_New(0);
    lengths = PyList_New(0);
    transfer = PyList_New(0);
    content = PyList_New(0);
    if (headers == NULL || lengths == NULL || transfer == NULL || content == NULL)
        goto done;
    int usual = usual_fields(p, first + 1, blank, max_headers, headers, lengths, transfer, content);
    if (usual < 0)
        goto done;
    if (!usual) {
        Py_SETREF(headers, Py_NewRef(Py_None));
        Py_SETREF(lengths, PyList_New(0));
        Py_SETREF(transfer, PyList_New(0));
        Py_SETREF(content, PyList_New(0));
        if (lengths == NULL || transfer == NULL || content == NULL)
            goto done;
    }
    result = Py_BuildValue("(nnny#y#y#OOOO)", end, first, blank, (const char *)p, method_end,
                           (const char *)p + target_start, target_end - target_start, (const char *)p + version_start,
                           (Py_ssize_t)3, headers, lengths, transfer, content);
    goto done;
none:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(headers);
    Py_XDECREF(lengths);
    Py_XDECREF(transfer);
    Py_XDECREF(content);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"split_head", (PyCFunction)(void (*)(void))split_head, METH_FASTCALL,
     "split_head(buf, avail, max_header_bytes, max_headers): as http1.split_head."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "phonehome._http1",
    .m_doc = "An HTTP/1 request's header section split in one call, in C (optional; see http1.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__http1(void)
{
    init_classes();
    return PyModule_Create(&module);
}
