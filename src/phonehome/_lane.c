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

/* The lane's flow for one record whose IPv4 header starts at `ip` (at least 40 bytes before
 * `nxt`): a new reference when the lane takes the packet, NULL when it does not (or, with an
 * error set, on a Python error). */
static PyObject *
lane_flow(const unsigned char *b, Py_ssize_t ip, Py_ssize_t nxt, PyObject *lanes)
{
    /* IPv4 with a 20-byte header (no options), TCP, not a later fragment, and a total length
     * that is either absent (0, as TSO captures write) or covers both headers. */
    unsigned total = read16be(b + ip + 2);
    if (b[ip] != 0x45 || b[ip + 9] != 6 || (read16be(b + ip + 6) & 0x1FFF) || (total && total < 40))
        return NULL;
    /* Data offset of 5 or more, and none of FIN, SYN, RST (RFC 9293 §3.1). */
    unsigned doff = b[ip + 32];
    if (doff < 0x50 || (b[ip + 33] & 0x07))
        return NULL;
    PyObject *key = PyBytes_FromStringAndSize((const char *)b + ip + 12, 12);
    if (key == NULL)
        return NULL;
    PyObject *entry = PyDict_GetItemWithError(lanes, key); /* borrowed */
    Py_DECREF(key);
    if (entry == NULL)
        return NULL;
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2) {
        PyErr_SetString(PyExc_TypeError, "lane entries must be (flow, bool) tuples");
        return NULL;
    }
    Py_INCREF(entry); /* truth testing may run code that changes the dict */
    int whole = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 1));
    Py_ssize_t ip_end = (total && ip + (Py_ssize_t)total < nxt) ? ip + (Py_ssize_t)total : nxt;
    PyObject *flow = NULL;
    /* Unless it carries payload the flow reads. */
    if (whole > 0 || (whole == 0 && ip_end <= ip + 20 + ((doff >> 2) & 0x3C))) {
        flow = PyTuple_GET_ITEM(entry, 0);
        Py_INCREF(flow);
    }
    Py_DECREF(entry);
    return flow;
}

/* Packets of one flow passed over in a row, not yet handed to the lane. */
typedef struct {
    PyObject *flow; /* a strong reference, or NULL when there is no run */
    Py_ssize_t count, at, sec; /* how many; the record of the last, and its seconds */
    double time;               /* of the last */
    Py_ssize_t room;      /* what passable() allowed when the run began */
} Run;

/* Hand the run to pass_over(flow, time, count): 1 when it answered true, 0 when false or there
 * was no run, -1 on a Python error. */
static int
hand_on(Run *run, PyObject *pass_over)
{
    if (run->flow == NULL)
        return 0;
    PyObject *when = PyFloat_FromDouble(run->time), *count = PyLong_FromSsize_t(run->count);
    PyObject *result = NULL;
    if (when != NULL && count != NULL) {
        PyObject *call[4] = {NULL, run->flow, when, count};
        result = PyObject_Vectorcall(pass_over, call + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    Py_XDECREF(when);
    Py_XDECREF(count);
    Py_CLEAR(run->flow);
    run->count = 0;
    if (result == NULL)
        return -1;
    int answer = PyObject_IsTrue(result);
    Py_DECREF(result);
    return answer;
}

/* How many packets the lane lets a run hold now (its passable()); -1 on a Python error. */
static Py_ssize_t
room(PyObject *passable)
{
    PyObject *result = PyObject_CallNoArgs(passable);
    if (result == NULL)
        return -1;
    Py_ssize_t n = PyLong_AsSsize_t(result);
    Py_DECREF(result);
    if (n == -1 && PyErr_Occurred())
        return -1;
    return n < 1 ? 1 : n;
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
"walk_pcap(buf, pos, end, hlen, big, div, limit, ip_off, etype_off, lanes, pass_over, passable,\n"
"          last_sec, base)\n"
"--\n\n"
"Walk classic pcap records of ``buf`` from ``pos`` while they are packets for the lane.\n\n"
"``hlen``: record header length (16, or 24 for the modified format); ``big``: header byte order;\n"
"``div``: timestamp fraction units per second; ``limit``: longest captured length taken;\n"
"``ip_off``: offset of the IPv4 header in the frame; ``etype_off``: offset of the 16-bit\n"
"ethertype that must read 0x0800, or -1 for raw IP; ``lanes``, ``pass_over`` and ``passable``:\n"
"the lane's (see capture.Lane; runs of one flow are handed on in one call); ``last_sec``: the\n"
"last record's seconds (-1: none); ``base``: file offset of buf.\n\n"
"Returns ``(pos, last_sec, stop, at, packet)``: where the walk stopped, the seconds of the last\n"
"record read, why it stopped (0: the record at pos is not whole yet; 1: the record at pos is\n"
"for Python to read; 2: pass_over returned true for the run whose last record is at ``at``;\n"
"3: the record at ``at``, which ends at pos, is a plain IPv4 TCP or UDP packet, and ``packet``\n"
"holds the arguments of capture._packet for it; otherwise ``packet`` is None).");

static PyObject *
walk_pcap(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, end, hlen, big, limit, ip_off, etype_off, last_sec, base;
    double div;
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "walk_pcap takes 14 arguments");
        return NULL;
    }
    PyObject *bufobj = args[0], *lanes = args[9], *pass_over = args[10], *passable = args[11];
    if (!PyBytes_CheckExact(bufobj) || !PyDict_CheckExact(lanes)) {
        PyErr_SetString(PyExc_TypeError, "walk_pcap needs bytes and a dict");
        return NULL;
    }
    if (!as_ssize(args[1], &pos) || !as_ssize(args[2], &end) || !as_ssize(args[3], &hlen) ||
        !as_ssize(args[4], &big) || !as_ssize(args[6], &limit) || !as_ssize(args[7], &ip_off) ||
        !as_ssize(args[8], &etype_off) || !as_ssize(args[12], &last_sec) || !as_ssize(args[13], &base))
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
    int stop = NEED_BYTES, answer;
    Py_ssize_t at = pos;
    PyObject *packet = NULL;
    Run run = {NULL, 0, 0, 0, 0.0, 0};
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
        PyObject *flow = nxt - ip >= 40 ? lane_flow(b, ip, nxt, lanes) : NULL;
        if (flow == NULL && PyErr_Occurred())
            goto error;
        if (run.flow != NULL && flow != run.flow) {
            /* The run ends here; this record is read afresh if the lane has output first. */
            answer = hand_on(&run, pass_over);
            if (answer) {
                Py_XDECREF(flow);
                if (answer < 0)
                    goto error;
                stop = FLUSHED;
                at = run.at;
                break;
            }
        }
        if (flow != NULL) {
            if (run.flow == NULL) {
                run.room = room(passable);
                if (run.room < 0) {
                    Py_DECREF(flow);
                    goto error;
                }
                run.flow = flow;
            }
            else
                Py_DECREF(flow);
            run.count++;
            run.time = time;
            run.at = pos;
            run.sec = (Py_ssize_t)sec;
            last_sec = (Py_ssize_t)sec;
            pos = nxt;
            if (run.count >= run.room) {
                at = run.at;
                answer = hand_on(&run, pass_over);
                if (answer < 0)
                    goto error;
                if (answer) {
                    stop = FLUSHED;
                    break;
                }
            }
            continue;
        }
        packet = decode_record(b, ip, nxt, time, base + pos);
        if (packet == NULL) {
            if (PyErr_Occurred())
                goto error;
            stop = SLOW;
            break;
        }
        stop = DECODED;
        last_sec = (Py_ssize_t)sec;
        at = pos;
        pos = nxt;
        break;
    }
    if (run.flow != NULL) {
        /* The walk stops inside a run: hand it on first. Its answer, when true, is reported in
         * place of the stop, and the record at pos (a packet decoded here included) is read again. */
        Py_ssize_t run_at = run.at, run_sec = run.sec;
        answer = hand_on(&run, pass_over);
        if (answer < 0)
            goto error;
        if (answer) {
            if (stop == DECODED) {
                Py_CLEAR(packet);
                pos = at;
            }
            stop = FLUSHED;
            at = run_at;
            last_sec = run_sec;
        }
    }
    if (packet == NULL)
        return Py_BuildValue("(nninO)", pos, last_sec, stop, at, Py_None);
    return Py_BuildValue("(nninN)", pos, last_sec, stop, at, packet);
error:
    Py_XDECREF(run.flow);
    Py_XDECREF(packet);
    return NULL;
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
