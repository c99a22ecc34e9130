/* phonehome._lane: the classic pcap reader's fast lane, in C.
 *
 * The same walk as the pure-Python loop in phonehome/sources/capture.py (CaptureReader._run_pcap),
 * which stays the reference and the fallback when this module is not built. It walks pcap records
 * from a position in the capture buffer and, for each plain IPv4 TCP packet of a flow the lane
 * knows (see capture.Lane), calls the lane's pass_over(flow, time) without building any Python
 * object for the packet beyond its 12-byte address key and its timestamp. A plain IPv4 TCP or UDP
 * packet the lane does not take is decoded here as capture._ip4 and _tcp/_udp would decode it, and
 * handed back. Anything else (a record not whole yet, one longer than the limit, damage, IPv6,
 * VLAN tags, fragments) is handed back undecoded for the Python decoders and their notices.
 *
 * Every read is bounds-checked against `end`, which the caller guarantees is within the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Why walk_pcap stopped (capture.py names them _LANE_NEED_BYTES, _LANE_SLOW, _LANE_FLUSHED,
 * _LANE_DECODED). */
enum { NEED_BYTES = 0, SLOW = 1, FLUSHED = 2, DECODED = 3 };

static inline uint32_t
read32(const unsigned char *p, int big)
{
    if (big)
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

static inline unsigned
read16be(const unsigned char *p)
{
    return ((unsigned)p[0] << 8) | p[1];
}

static int
as_ssize(PyObject *obj, Py_ssize_t *out)
{
    *out = PyLong_AsSsize_t(obj);
    return !(*out == -1 && PyErr_Occurred());
}

/* The lane's part of one record whose IPv4 header starts at `ip` (at least 40 bytes before `nxt`):
 * 1 when it was passed over (*flushed set from pass_over's answer), 0 when it is not the lane's,
 * -1 on a Python error. */
static int
lane_record(const unsigned char *b, Py_ssize_t ip, Py_ssize_t nxt, PyObject *lanes, PyObject *pass_over,
            double time, int *flushed)
{
    /* IPv4 with a 20-byte header (no options), TCP, not a later fragment, and a total length
     * that is either absent (0, as TSO captures write) or covers both headers. */
    unsigned total = read16be(b + ip + 2);
    if (b[ip] != 0x45 || b[ip + 9] != 6 || (read16be(b + ip + 6) & 0x1FFF) || (total && total < 40))
        return 0;
    /* Data offset of 5 or more, and none of FIN, SYN, RST (RFC 9293 §3.1). */
    unsigned doff = b[ip + 32];
    if (doff < 0x50 || (b[ip + 33] & 0x07))
        return 0;
    PyObject *key = PyBytes_FromStringAndSize((const char *)b + ip + 12, 12);
    if (key == NULL)
        return -1;
    PyObject *entry = PyDict_GetItemWithError(lanes, key); /* borrowed */
    Py_DECREF(key);
    if (entry == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2) {
        PyErr_SetString(PyExc_TypeError, "lane entries must be (flow, bool) tuples");
        return -1;
    }
    Py_INCREF(entry); /* pass_over may change the dict */
    int whole = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 1));
    Py_ssize_t ip_end = (total && ip + (Py_ssize_t)total < nxt) ? ip + (Py_ssize_t)total : nxt;
    if (whole <= 0 && (whole < 0 || ip_end > ip + 20 + ((doff >> 2) & 0x3C))) {
        Py_DECREF(entry);
        return whole < 0 ? -1 : 0; /* it carries payload the flow reads */
    }
    PyObject *when = PyFloat_FromDouble(time);
    if (when == NULL) {
        Py_DECREF(entry);
        return -1;
    }
    PyObject *call[3] = {NULL, PyTuple_GET_ITEM(entry, 0), when};
    PyObject *result = PyObject_Vectorcall(pass_over, call + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(when);
    Py_DECREF(entry);
    if (result == NULL)
        return -1;
    *flushed = PyObject_IsTrue(result);
    Py_DECREF(result);
    return *flushed < 0 ? -1 : 1;
}

/* The arguments of capture._packet for a plain IPv4 TCP or UDP frame whose IPv4 header starts at
 * `ip`: what capture._ip4 and capture._tcp or _udp return, with the time and offset before it.
 * NULL without an error set when the frame is not that plain (Python reads it, with its notices). */
static PyObject *
decode_record(const unsigned char *b, Py_ssize_t ip, Py_ssize_t nxt, double time, Py_ssize_t offset)
{
    if (nxt - ip < 20)
        return NULL;
    unsigned ihl = (unsigned)(b[ip] & 0x0F) << 2, total = read16be(b + ip + 2), proto = b[ip + 9];
    if (b[ip] >> 4 != 4 || ihl < 20 || (read16be(b + ip + 6) & 0x1FFF) || (proto != 6 && proto != 17) ||
        (total && total < ihl))
        return NULL;
    Py_ssize_t end = (total && ip + (Py_ssize_t)total < nxt) ? ip + (Py_ssize_t)total : nxt;
    Py_ssize_t t = ip + ihl;
    unsigned sport, dport, flags = 0;
    unsigned long seq = 0;
    Py_ssize_t data;
    if (proto == 6) {
        if (end - t < 20 || ((b[t + 12] >> 2) & 0x3C) < 20)
            return NULL;
        seq = read32(b + t + 4, 1);
        flags = b[t + 13];
        data = t + ((b[t + 12] >> 2) & 0x3C);
    }
    else {
        if (end - t < 8)
            return NULL;
        data = t + 8;
    }
    sport = read16be(b + t);
    dport = read16be(b + t + 2);
    if (data > end)
        data = end; /* a header longer than the packet: no payload, as a Python slice gives */
    return Py_BuildValue("(dnIy#y#IIIky#)", time, offset, proto, (const char *)b + ip + 12, (Py_ssize_t)4,
                         (const char *)b + ip + 16, (Py_ssize_t)4, sport, dport, flags, seq,
                         (const char *)b + data, end - data);
}

PyDoc_STRVAR(walk_pcap_doc,
"walk_pcap(buf, pos, end, hlen, big, div, limit, ip_off, etype_off, lanes, pass_over, last_sec, base)\n"
"--\n\n"
"Walk classic pcap records of ``buf`` from ``pos`` while they are packets for the lane.\n\n"
"``hlen``: record header length (16, or 24 for the modified format); ``big``: header byte order;\n"
"``div``: timestamp fraction units per second; ``limit``: longest captured length taken;\n"
"``ip_off``: offset of the IPv4 header in the frame; ``etype_off``: offset of the 16-bit\n"
"ethertype that must read 0x0800, or -1 for raw IP; ``lanes``: the lane's dict; ``pass_over``:\n"
"its method; ``last_sec``: the last record's seconds (-1: none); ``base``: file offset of buf.\n\n"
"Returns ``(pos, last_sec, stop, at, packet)``: where the walk stopped, the seconds of the last\n"
"record read, why it stopped (0: the record at pos is not whole yet; 1: the record at pos is\n"
"for Python to read; 2: pass_over returned true for the record at ``at``, which ends at pos;\n"
"3: the record at ``at``, which ends at pos, is a plain IPv4 TCP or UDP packet, and ``packet``\n"
"holds the arguments of capture._packet for it; otherwise ``packet`` is None).");

static PyObject *
walk_pcap(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, end, hlen, big, limit, ip_off, etype_off, last_sec, base;
    double div;
    if (nargs != 13) {
        PyErr_SetString(PyExc_TypeError, "walk_pcap takes 13 arguments");
        return NULL;
    }
    PyObject *bufobj = args[0], *lanes = args[9], *pass_over = args[10];
    if (!PyBytes_CheckExact(bufobj) || !PyDict_CheckExact(lanes)) {
        PyErr_SetString(PyExc_TypeError, "walk_pcap needs bytes and a dict");
        return NULL;
    }
    if (!as_ssize(args[1], &pos) || !as_ssize(args[2], &end) || !as_ssize(args[3], &hlen) ||
        !as_ssize(args[4], &big) || !as_ssize(args[6], &limit) || !as_ssize(args[7], &ip_off) ||
        !as_ssize(args[8], &etype_off) || !as_ssize(args[11], &last_sec) || !as_ssize(args[12], &base))
        return NULL;
    div = PyFloat_AsDouble(args[5]);
    if (div == -1.0 && PyErr_Occurred())
        return NULL;
    if (pos < 0 || end < pos || end > PyBytes_GET_SIZE(bufobj) || hlen < 16 || limit < 0 ||
        ip_off < 0 || etype_off < -1 || (etype_off >= 0 && etype_off + 2 > ip_off) || div <= 0 ||
        base < 0) {
        PyErr_SetString(PyExc_ValueError, "walk_pcap: arguments out of range");
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(bufobj);
    int stop = NEED_BYTES;
    Py_ssize_t at = pos;
    PyObject *packet = NULL;
    while (end - pos >= hlen) {
        const unsigned char *rec = b + pos;
        uint32_t sec = read32(rec, (int)big), frac = read32(rec + 4, (int)big);
        uint32_t caplen = read32(rec + 8, (int)big);
        if ((Py_ssize_t)caplen > limit) {
            stop = SLOW;
            break;
        }
        Py_ssize_t nxt = pos + hlen + (Py_ssize_t)caplen;
        if (nxt > end)
            break;
        Py_ssize_t ip = pos + hlen + ip_off;
        if (nxt - ip < 20 || (etype_off >= 0 && read16be(b + pos + hlen + etype_off) != 0x0800)) {
            stop = SLOW;
            break;
        }
        double time = (double)sec + (double)frac / div;
        int flushed = 0, passed = nxt - ip >= 40 ? lane_record(b, ip, nxt, lanes, pass_over, time, &flushed) : 0;
        if (passed < 0)
            return NULL;
        if (!passed) {
            packet = decode_record(b, ip, nxt, time, base + pos);
            if (packet == NULL) {
                if (PyErr_Occurred())
                    return NULL;
                stop = SLOW;
                break;
            }
            stop = DECODED;
        }
        else if (flushed)
            stop = FLUSHED;
        last_sec = (Py_ssize_t)sec;
        at = pos;
        pos = nxt;
        if (stop != NEED_BYTES)
            break;
    }
    if (packet == NULL)
        return Py_BuildValue("(nninO)", pos, last_sec, stop, at, Py_None);
    return Py_BuildValue("(nninN)", pos, last_sec, stop, at, packet);
}

static PyMethodDef methods[] = {
    {"walk_pcap", (PyCFunction)(void (*)(void))walk_pcap, METH_FASTCALL, walk_pcap_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "phonehome._lane",
    .m_doc = "The classic pcap reader's fast lane, in C.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__lane(void)
{
    return PyModule_Create(&module);
}
