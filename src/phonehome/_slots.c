/* phonehome._slots: store an object's slot fields in one call, for quickinit's __init__.
 *
 * quickinit gives a frozen, slotted dataclass an __init__ that stores each field through its slot
 * descriptor (descriptor.__set__(self, value)): one Python-level call per field. Packets, parts,
 * exchanges and findings are made by the hundred thousand, with 2 to 27 fields each. A Filler
 * holds the offsets of a class's slots, read from its member descriptors, and stores every field
 * of an instance in one call: filler(obj, value0, value1, ...), in field order. It stores what
 * the descriptors' __set__ would (a new reference in the slot, the old one released), no more:
 * the generated __init__ in quickinit.py stays the reference and the fallback where this module
 * is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

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
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "Filler names must be strings");
            Py_DECREF(self);
            return NULL;
        }
        /* The descriptor the class's instances use for this name: a slot's member descriptor
         * (an object slot, writable) of this class or of a base of it. */
        PyObject *descr = PyObject_GetAttr(cls, name);
        if (descr == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type);
        PyMemberDef *member = ok ? ((PyMemberDescrObject *)descr)->d_member : NULL;
        ok = ok && member->type == T_OBJECT_EX && !(member->flags & READONLY) &&
             PyType_IsSubtype((PyTypeObject *)cls, PyDescr_TYPE(descr));
        Py_ssize_t offset = ok ? member->offset : 0;
        Py_DECREF(descr);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s.%U is not a writable object slot", ((PyTypeObject *)cls)->tp_name, name);
            Py_DECREF(self);
            return NULL;
        }
        self->offsets[i] = offset;
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

static int
slots_exec(PyObject *module)
{
    if (PyType_Ready(&FillerType) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "Filler", (PyObject *)&FillerType);
}

static PyModuleDef_Slot slots_slots[] = {
    {Py_mod_exec, slots_exec},
    {0, NULL},
};

static struct PyModuleDef slots_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "phonehome._slots",
    .m_doc = "Store an object's slot fields in one call (quickinit's __init__, in C).",
    .m_size = 0,
    .m_slots = slots_slots,
};

PyMODINIT_FUNC
PyInit__slots(void)
{
    return PyModuleDef_Init(&slots_module);
}
