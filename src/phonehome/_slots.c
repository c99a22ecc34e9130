/* phonehome._slots: an object's slot fields stored in one call (Filler, for quickinit's __init__),
 * and written out as one JSON object in one call (Writer, for the findings document).
 *
 * quickinit gives a frozen, slotted dataclass an __init__ that stores each field through its slot
 * descriptor (descriptor.__set__(self, value)): one Python-level call per field. Packets, parts,
 * exchanges and findings are made by the hundred thousand, with 2 to 27 fields each. A Filler
 * holds the offsets of a class's slots, read from its member descriptors, and stores every field
 * of an instance in one call: filler(obj, value0, value1, ...), in field order. It stores what
 * the descriptors' __set__ would (a new reference in the slot, the old one released), no more:
 * the generated __init__ in quickinit.py stays the reference and the fallback where this module
 * is not built.
 *
 * A Writer does what report/json_report.py's generated finding_text does (the reference and the
 * fallback): each field's key, already encoded, then its value by kind: text (or None) through a
 * memo of texts already encoded, else through the caller's text encoder (its result then added
 * to the memo while the memo holds fewer than memo_max entries); an int as int.__repr__;
 * a bool as true or false; a float as float.__repr__ when finite, else through the caller's
 * encoder; and a last, optional field (a dict) through that encoder when it is not empty.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    PyTypeObject *cls;    /* the class whose instances this fills (or subclasses') */
    Py_ssize_t count;     /* how many slots */
    Py_ssize_t *offsets;  /* of each slot in the instance, in field order */
    vectorcallfunc vectorcall;
} Filler;

static PyObject *
filler_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Filler *self = (Filler *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "Filler takes no keyword arguments");
        return NULL;
    }
    if (nargs != self->count + 1) {
        PyErr_Format(PyExc_TypeError, "Filler for %s takes the object and %zd values (%zd given)",
                     self->cls->tp_name, self->count, nargs - 1);
        return NULL;
    }
    PyObject *obj = args[0];
    if (!PyObject_TypeCheck(obj, self->cls)) {
        PyErr_Format(PyExc_TypeError, "Filler for %s given a %s", self->cls->tp_name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    char *base = (char *)obj;
    for (Py_ssize_t i = 0; i < self->count; i++) {
        PyObject **slot = (PyObject **)(base + self->offsets[i]);
        Py_XSETREF(*slot, Py_NewRef(args[i + 1]));
    }
    Py_RETURN_NONE;
}

/* The offset of each slot named in `names` (strings) in instances of `cls`: each a slot's member
 * descriptor (an object slot, writable) of `cls` or of a base of it. -1 with an error set. */
static int
slot_offsets(PyObject *cls, PyObject *names, Py_ssize_t *offsets)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "slot names must be strings");
            return -1;
        }
        PyObject *descr = PyObject_GetAttr(cls, name);
        if (descr == NULL)
            return -1;
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type);
        PyMemberDef *member = ok ? ((PyMemberDescrObject *)descr)->d_member : NULL;
        ok = ok && member->type == T_OBJECT_EX && !(member->flags & READONLY) &&
             PyType_IsSubtype((PyTypeObject *)cls, PyDescr_TYPE(descr));
        Py_ssize_t offset = ok ? member->offset : 0;
        Py_DECREF(descr);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s.%U is not a writable object slot", ((PyTypeObject *)cls)->tp_name, name);
            return -1;
        }
        offsets[i] = offset;
    }
    return 0;
}

static PyObject *
filler_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kw[] = {"cls", "names", NULL};
    PyObject *cls, *names;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!:Filler", kw, &PyType_Type, &cls, &PyTuple_Type, &names))
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(names);
    Filler *self = (Filler *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = filler_call;
    self->cls = (PyTypeObject *)Py_NewRef(cls);
    self->offsets = PyMem_New(Py_ssize_t, count > 0 ? count : 1);
    if (self->offsets == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    if (slot_offsets(cls, names, self->offsets) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->count = count;
    return (PyObject *)self;
}

static int
filler_traverse(Filler *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cls);
    return 0;
}

static int
filler_clear(Filler *self)
{
    Py_CLEAR(self->cls);
    return 0;
}

static void
filler_dealloc(Filler *self)
{
    PyObject_GC_UnTrack(self);
    filler_clear(self);
    PyMem_Free(self->offsets);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FillerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "phonehome._slots.Filler",
    .tp_doc = PyDoc_STR("Filler(cls, names): filler(obj, *values) stores each value in the slot of its "
                        "name, in order (what each slot descriptor's __set__ does, in one call)."),
    .tp_basicsize = sizeof(Filler),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = filler_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Filler, vectorcall),
    .tp_traverse = (traverseproc)filler_traverse,
    .tp_clear = (inquiry)filler_clear,
    .tp_dealloc = (destructor)filler_dealloc,
};


/* ---- Writer ------------------------------------------------------------------------------- */

enum { KIND_TEXT = 't', KIND_INT = 'i', KIND_BOOL = 'b', KIND_FLOAT = 'f' };

typedef struct {
    PyObject_HEAD
    PyTypeObject *cls;
    Py_ssize_t count;    /* fields before the last, optional one */
    Py_ssize_t *offsets; /* count + 1: the last is the optional field's */
    char *kinds;         /* count */
    PyObject *keys;      /* tuple of count + 2 str: each field's key text (what precedes its value),
                            the optional field's, and the closing text */
    PyObject *memo;      /* dict: text (or None) -> its JSON text */
    Py_ssize_t memo_max; /* entries past which the memo takes no more */
    PyObject *text;      /* text -> its JSON text, for a text not in the memo (then added to it) */
    PyObject *other;     /* any value -> its JSON text: non-finite floats, the optional field */
    PyObject *json_true, *json_false;
    vectorcallfunc vectorcall;
} Writer;

/* The JSON text of one value of the given kind: a new reference, NULL on an error. */
static PyObject *
writer_value(Writer *self, char kind, PyObject *value)
{
    switch (kind) {
    case KIND_TEXT: {
        PyObject *known = PyDict_GetItemWithError(self->memo, value); /* borrowed */
        if (known != NULL)
            return Py_NewRef(known);
        if (PyErr_Occurred())
            return NULL;
        PyObject *made = PyObject_CallOneArg(self->text, value);
        if (made != NULL && PyDict_GET_SIZE(self->memo) < self->memo_max &&
            PyDict_SetItem(self->memo, value, made) < 0)
            Py_CLEAR(made);
        return made;
    }
    case KIND_INT:
        if (!PyLong_Check(value))
            break;
        return PyLong_Type.tp_repr(value);
    case KIND_BOOL: {
        int truth = PyObject_IsTrue(value);
        if (truth < 0)
            return NULL;
        return Py_NewRef(truth ? self->json_true : self->json_false);
    }
    case KIND_FLOAT:
        if (!PyFloat_Check(value))
            break;
        if (Py_IS_FINITE(PyFloat_AS_DOUBLE(value)))
            return PyFloat_Type.tp_repr(value);
        return PyObject_CallOneArg(self->other, value);
    }
    PyErr_Format(PyExc_TypeError, "Writer: a field of kind '%c' holds a %s", kind, Py_TYPE(value)->tp_name);
    return NULL;
}

#define MAX_PIECES 256

static PyObject *
writer_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Writer *self = (Writer *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError, "Writer takes one object");
        return NULL;
    }
    PyObject *obj = args[0];
    if (!PyObject_TypeCheck(obj, self->cls)) {
        PyErr_Format(PyExc_TypeError, "Writer for %s given a %s", self->cls->tp_name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    /* Keys (borrowed) and values (owned) in turn; the optional field and the end after them. */
    PyObject *pieces[MAX_PIECES];
    Py_ssize_t n = 0, length = 0;
    int ascii = 1;
    char *base = (char *)obj;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i <= self->count; i++) {
        PyObject *value = *(PyObject **)(base + self->offsets[i]);
        if (value == NULL) {
            PyErr_Format(PyExc_AttributeError, "Writer: a field of %s is not set", self->cls->tp_name);
            goto done;
        }
        PyObject *text;
        if (i == self->count) { /* the optional field: written only when it holds something */
            int truth = PyObject_IsTrue(value);
            if (truth < 0)
                goto done;
            if (!truth)
                break;
            text = PyObject_CallOneArg(self->other, value);
        }
        else
            text = writer_value(self, self->kinds[i], value);
        if (text == NULL)
            goto done;
        if (!PyUnicode_Check(text)) {
            Py_DECREF(text);
            PyErr_SetString(PyExc_TypeError, "Writer: an encoder returned something other than str");
            goto done;
        }
        pieces[n++] = PyTuple_GET_ITEM(self->keys, i);
        pieces[n++] = text;
    }
    pieces[n++] = PyTuple_GET_ITEM(self->keys, self->count + 1);
    for (Py_ssize_t i = 0; i < n; i++) {
        ascii = ascii && PyUnicode_IS_ASCII(pieces[i]);
        length += PyUnicode_GET_LENGTH(pieces[i]);
    }
    if (ascii) { /* the usual case: every piece ASCII, copied once into the result */
        result = PyUnicode_New(length, 127);
        if (result != NULL) {
            Py_UCS1 *out = PyUnicode_1BYTE_DATA(result);
            for (Py_ssize_t i = 0; i < n; i++) {
                Py_ssize_t len = PyUnicode_GET_LENGTH(pieces[i]);
                memcpy(out, PyUnicode_1BYTE_DATA(pieces[i]), (size_t)len);
                out += len;
            }
        }
    }
    else {
        PyObject *list = PyList_New(n);
        if (list != NULL) {
            for (Py_ssize_t i = 0; i < n; i++)
                PyList_SET_ITEM(list, i, Py_NewRef(pieces[i]));
            result = PyUnicode_Join(NULL, list);
            Py_DECREF(list);
        }
    }
done:
    /* The values, owned, sit at the odd places; keys and the end (borrowed) at the even ones. */
    for (Py_ssize_t i = 1; i < n; i += 2)
        Py_DECREF(pieces[i]);
    return result;
}

static PyObject *
writer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kw[] = {"cls", "names", "kinds", "keys", "memo", "memo_max", "text", "other", NULL};
    PyObject *cls, *names, *kinds, *keys, *memo, *text, *other;
    Py_ssize_t memo_max;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!SO!O!nOO:Writer", kw, &PyType_Type, &cls, &PyTuple_Type,
                                     &names, &kinds, &PyTuple_Type, &keys, &PyDict_Type, &memo, &memo_max, &text,
                                     &other))
        return NULL;
    Py_ssize_t fields = PyTuple_GET_SIZE(names) - 1;
    if (fields < 0 || 2 * (fields + 1) + 1 > MAX_PIECES || PyBytes_GET_SIZE(kinds) != fields ||
        PyTuple_GET_SIZE(keys) != fields + 2) {
        PyErr_SetString(PyExc_ValueError,
                        "Writer: a kind for each name but the last, a key for each name and one to end");
        return NULL;
    }
    const char *k = PyBytes_AS_STRING(kinds);
    for (Py_ssize_t i = 0; i < fields; i++)
        if (k[i] != KIND_TEXT && k[i] != KIND_INT && k[i] != KIND_BOOL && k[i] != KIND_FLOAT) {
            PyErr_SetString(PyExc_ValueError, "Writer: kinds are t (text), i (int), b (bool) or f (float)");
            return NULL;
        }
    for (Py_ssize_t i = 0; i < fields + 2; i++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(keys, i))) {
            PyErr_SetString(PyExc_TypeError, "Writer: keys must be str");
            return NULL;
        }
    if (!PyCallable_Check(text) || !PyCallable_Check(other)) {
        PyErr_SetString(PyExc_TypeError, "Writer: text and other must be callable");
        return NULL;
    }
    Writer *self = (Writer *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = writer_call;
    self->cls = (PyTypeObject *)Py_NewRef(cls);
    self->keys = Py_NewRef(keys);
    self->memo = Py_NewRef(memo);
    self->memo_max = memo_max;
    self->text = Py_NewRef(text);
    self->other = Py_NewRef(other);
    self->json_true = PyUnicode_FromString("true");
    self->json_false = PyUnicode_FromString("false");
    self->offsets = PyMem_New(Py_ssize_t, fields + 1);
    self->kinds = PyMem_Malloc((size_t)fields + 1);
    if (self->json_true == NULL || self->json_false == NULL || self->offsets == NULL || self->kinds == NULL) {
        Py_DECREF(self);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    memcpy(self->kinds, k, (size_t)fields);
    if (slot_offsets(cls, names, self->offsets) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->count = fields;
    return (PyObject *)self;
}

static int
writer_traverse(Writer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cls);
    Py_VISIT(self->keys);
    Py_VISIT(self->memo);
    Py_VISIT(self->text);
    Py_VISIT(self->other);
    return 0;
}

static int
writer_clear(Writer *self)
{
    Py_CLEAR(self->cls);
    Py_CLEAR(self->keys);
    Py_CLEAR(self->memo);
    Py_CLEAR(self->text);
    Py_CLEAR(self->other);
    Py_CLEAR(self->json_true);
    Py_CLEAR(self->json_false);
    return 0;
}

static void
writer_dealloc(Writer *self)
{
    PyObject_GC_UnTrack(self);
    writer_clear(self);
    PyMem_Free(self->offsets);
    PyMem_Free(self->kinds);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "phonehome._slots.Writer",
    .tp_doc = PyDoc_STR("Writer(cls, names, kinds, keys, memo, memo_max, text, other): writer(obj) is obj's fields as "
                        "one JSON object's text (see the module's documentation)."),
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = writer_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Writer, vectorcall),
    .tp_traverse = (traverseproc)writer_traverse,
    .tp_clear = (inquiry)writer_clear,
    .tp_dealloc = (destructor)writer_dealloc,
};

static int
slots_exec(PyObject *module)
{
    if (PyType_Ready(&FillerType) < 0 || PyType_Ready(&WriterType) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "Filler", (PyObject *)&FillerType) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "Writer", (PyObject *)&WriterType);
}

static PyModuleDef_Slot slots_slots[] = {
    {Py_mod_exec, slots_exec},
    {0, NULL},
};

static struct PyModuleDef slots_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "phonehome._slots",
    .m_doc = "An object's slot fields stored in one call (Filler) or written as JSON in one call (Writer).",
    .m_size = 0,
    .m_slots = slots_slots,
};

PyMODINIT_FUNC
PyInit__slots(void)
{
    return PyModuleDef_Init(&slots_module);
}
