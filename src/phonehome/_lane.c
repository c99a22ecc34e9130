/* phonehome._lane: the classic pcap reader's fast lane, in C.
 *
 * The same walk as the pure-Python loop in phonehome/sources/capture.py (CaptureReader._run_pcap),
 * which stays the reference and the fallback when this module is not built. It walks pcap records
 * from a position in the capture buffer and, for each plain IPv4 TCP packet of a flow the lane
 * knows (see capture.Lane), calls the lane's pass_over(flow, time) without building any Python
 * object for the packet beyond its 12-byte address key and its timestamp. A plain IPv4 TCP or UDP
 * packet the lane does not pass over is decoded here as capture._ip4 and _tcp/_udp would decode
 * it, and handed to the lane's packet(...) without returning to Python in between. Anything else (a
 * record not whole yet, one longer than the limit, damage, IPv6, VLAN tags, fragments) is handed
 * back undecoded for the Python decoders and their notices.
 *
 * Every read is bounds-checked against `end`, which the caller guarantees is within the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Why walk_pcap stopped (capture.py names them _LANE_NEED_BYTES, _LANE_SLOW, _LANE_FLUSHED). */
enum { NEED_BYTES = 0, SLOW = 1, FLUSHED = 2 };

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

/* The lane entry of the last key looked up, while the lanes cannot have changed (no Python code
 * ran since): consecutive packets of one flow are the usual case. `flow` is a strong reference. */
typedef struct {
    unsigned char key[12];
    PyObject *flow; /* NULL: nothing remembered */
    int whole;
} Seen;

static void
forget(Seen *seen)
{
    Py_CLEAR(seen->flow);
}

/* The lane's flow for one record whose IPv4 header starts at `ip` (at least 40 bytes before
 * `nxt`): a new reference when the lane takes the packet, NULL when it does not (or, with an
 * error set, on a Python error). */
static PyObject *
lane_flow(const unsigned char *b, Py_ssize_t ip, Py_ssize_t nxt, PyObject *lanes, Seen *seen)
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
    PyObject *candidate = NULL; /* borrowed from `seen` or a new reference to the entry's flow */
    int whole;
    if (seen->flow != NULL && memcmp(seen->key, b + ip + 12, 12) == 0) {
        candidate = seen->flow;
        Py_INCREF(candidate);
        whole = seen->whole;
    }
    else {
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
        PyObject *flag = PyTuple_GET_ITEM(entry, 1);
        whole = PyObject_IsTrue(flag);
        candidate = PyTuple_GET_ITEM(entry, 0);
        Py_INCREF(candidate);
        Py_DECREF(entry);
        if (whole < 0) {
            Py_DECREF(candidate);
            return NULL;
        }
        forget(seen);
        if (PyBool_Check(flag)) { /* remembered only where no Python code ran to answer */
            memcpy(seen->key, b + ip + 12, 12);
            seen->flow = Py_NewRef(candidate);
            seen->whole = whole;
        }
    }
    Py_ssize_t ip_end = (total && ip + (Py_ssize_t)total < nxt) ? ip + (Py_ssize_t)total : nxt;
    /* Unless it carries payload the flow reads. */
    if (whole || ip_end <= ip + 20 + ((doff >> 2) & 0x3C))
        return candidate;
    Py_DECREF(candidate);
    return NULL;
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

/* A plain IPv4 TCP or UDP frame whose IPv4 header starts at `ip`, decoded as capture._ip4 and
 * capture._tcp or _udp decode it, handed to `take`, the lane's packet(time, proto, src, dst, sport,
 * dport, flags, seq, payload). Returns 2 when it answered true (output waits), 1 when false, 0
 * when the frame is not that plain (Python reads it, with its notices), -1 on a Python error. */
static int
take_record(const unsigned char *b, Py_ssize_t ip, Py_ssize_t nxt, double time, PyObject *take)
{
    if (nxt - ip < 20)
        return 0;
    unsigned ihl = (unsigned)(b[ip] & 0x0F) << 2, total = read16be(b + ip + 2), proto = b[ip + 9];
    if (b[ip] >> 4 != 4 || ihl < 20 || (read16be(b + ip + 6) & 0x1FFF) || (proto != 6 && proto != 17) ||
        (total && total < ihl))
        return 0;
    Py_ssize_t end = (total && ip + (Py_ssize_t)total < nxt) ? ip + (Py_ssize_t)total : nxt;
    Py_ssize_t t = ip + ihl;
    unsigned sport, dport, flags = 0;
    unsigned long seq = 0;
    Py_ssize_t data;
    if (proto == 6) {
        if (end - t < 20 || ((b[t + 12] >> 2) & 0x3C) < 20)
            return 0;
        seq = read32(b + t + 4, 1);
        flags = b[t + 13];
        data = t + ((b[t + 12] >> 2) & 0x3C);
    }
    else {
        if (end - t < 8)
            return 0;
        data = t + 8;
    }
    sport = read16be(b + t);
    dport = read16be(b + t + 2);
    if (data > end)
        data = end; /* a header longer than the packet: no payload, as a Python slice gives */
    PyObject *args[10] = {
        NULL,
        PyFloat_FromDouble(time),
        PyLong_FromLong((long)proto),
        PyBytes_FromStringAndSize((const char *)b + ip + 12, 4),
        PyBytes_FromStringAndSize((const char *)b + ip + 16, 4),
        PyLong_FromLong((long)sport),
        PyLong_FromLong((long)dport),
        PyLong_FromLong((long)flags),
        PyLong_FromUnsignedLong(seq),
        PyBytes_FromStringAndSize((const char *)b + data, end - data),
    };
    int answer = -1;
    int made = 1;
    for (int i = 1; i < 10; i++)
        made = made && args[i] != NULL;
    if (made) {
        PyObject *result = PyObject_Vectorcall(take, args + 1, 9 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (result != NULL) {
            answer = PyObject_IsTrue(result);
            Py_DECREF(result);
            if (answer >= 0)
                answer += 1;
        }
    }
    for (int i = 1; i < 10; i++)
        Py_XDECREF(args[i]);
    return answer;
}

/* A walk in progress: the run being gathered, why the walk stopped, the record it names (`at`),
 * and the seconds of the last record read (classic pcap only). */
typedef struct {
    Run run;
    int stop;
    Py_ssize_t at, last_sec;
    Seen seen; /* forgotten whenever Python code runs: it may change the lanes */
} Walk;

/* One whole record, from `pos` to `nxt`, whose frame holds an IPv4 header from `ip` to at most
 * `frame_end`: passed over into the run, or decoded and handed to the lane's packet, or left to
 * Python. Returns 1 to go on with the record at *pos (moved to `nxt`), 0 to stop (w->stop set), -1
 * on a Python error. */
static int
take(Walk *w, const unsigned char *b, Py_ssize_t *pos, Py_ssize_t nxt, Py_ssize_t ip, Py_ssize_t frame_end,
     double time, Py_ssize_t sec, PyObject *lanes, PyObject *pass_over, PyObject *passable, PyObject *taker)
{
    int answer;
    PyObject *flow = frame_end - ip >= 40 ? lane_flow(b, ip, frame_end, lanes, &w->seen) : NULL;
    if (flow == NULL && PyErr_Occurred())
        return -1;
    if (w->run.flow != NULL && flow != w->run.flow) {
        /* The run ends here; this record is read afresh if the lane has output first. */
        answer = hand_on(&w->run, pass_over);
        forget(&w->seen);
        if (answer) {
            Py_XDECREF(flow);
            if (answer < 0)
                return -1;
            w->stop = FLUSHED;
            w->at = w->run.at;
            return 0;
        }
    }
    if (flow != NULL) {
        if (w->run.flow == NULL) {
            w->run.room = room(passable);
            forget(&w->seen);
            if (w->run.room < 0) {
                Py_DECREF(flow);
                return -1;
            }
            w->run.flow = flow;
        }
        else
            Py_DECREF(flow);
        w->run.count++;
        w->run.time = time;
        w->run.at = *pos;
        w->run.sec = sec;
        w->last_sec = sec;
        *pos = nxt;
        if (w->run.count >= w->run.room) {
            w->at = w->run.at;
            answer = hand_on(&w->run, pass_over);
            forget(&w->seen);
            if (answer < 0)
                return -1;
            if (answer) {
                w->stop = FLUSHED;
                return 0;
            }
        }
        return 1;
    }
    answer = take_record(b, ip, frame_end, time, taker);
    if (answer < 0)
        return -1;
    if (answer == 0) {
        w->stop = SLOW;
        return 0;
    }
    forget(&w->seen);
    w->last_sec = sec;
    if (answer == 2) { /* output waits: the reader hands it on before the next record */
        w->stop = FLUSHED;
        w->at = *pos;
        *pos = nxt;
        return 0;
    }
    *pos = nxt;
    return 1;
}

/* The walk's answer, (pos, last_sec, stop, at), once the run it stopped inside is handed on: its
 * answer, when true, is reported in place of the stop (a run is only ever pending when the walk
 * stopped for want of bytes or for Python, at pos). NULL on a Python error. */
static PyObject *
finish(Walk *w, Py_ssize_t pos, PyObject *pass_over)
{
    forget(&w->seen);
    if (w->run.flow != NULL) {
        Py_ssize_t run_at = w->run.at, run_sec = w->run.sec;
        int answer = hand_on(&w->run, pass_over);
        if (answer < 0)
            return NULL;
        if (answer) {
            w->stop = FLUSHED;
            w->at = run_at;
            w->last_sec = run_sec;
        }
    }
    return Py_BuildValue("(nnin)", pos, w->last_sec, w->stop, w->at);
}

static PyObject *
walk_error(Walk *w)
{
    forget(&w->seen);
    Py_XDECREF(w->run.flow);
    return NULL;
}

PyDoc_STRVAR(walk_pcap_doc,
"walk_pcap(buf, pos, end, hlen, big, div, limit, ip_off, etype_off, lanes, pass_over, passable,\n"
"          last_sec, take)\n"
"--\n\n"
"Walk classic pcap records of ``buf`` from ``pos`` while they are packets for the lane.\n\n"
"``hlen``: record header length (16, or 24 for the modified format); ``big``: header byte order;\n"
"``div``: timestamp fraction units per second; ``limit``: longest captured length taken;\n"
"``ip_off``: offset of the IPv4 header in the frame; ``etype_off``: offset of the 16-bit\n"
"ethertype that must read 0x0800, or -1 for raw IP; ``lanes``, ``pass_over`` and ``passable``:\n"
"the lane's (see capture.Lane; runs of one flow are handed on in one call); ``last_sec``: the\n"
"last record's seconds (-1: none); ``take``: the lane's packet method, which each plain IPv4\n"
"TCP or UDP packet not passed over is decoded for and handed to.\n\n"
"Returns ``(pos, last_sec, stop, at)``: where the walk stopped, the seconds of the last record\n"
"read, and why it stopped (0: the record at pos is not whole yet; 1: the record at pos is for\n"
"Python to read; 2: pass_over or take returned true for the record at ``at``, the last read).");

static PyObject *
walk_pcap(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, end, hlen, big, limit, ip_off, etype_off, last_sec;
    double div;
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "walk_pcap takes 14 arguments");
        return NULL;
    }
    PyObject *bufobj = args[0], *lanes = args[9], *pass_over = args[10], *passable = args[11], *taker = args[13];
    if (!PyBytes_CheckExact(bufobj) || !PyDict_CheckExact(lanes)) {
        PyErr_SetString(PyExc_TypeError, "walk_pcap needs bytes and a dict");
        return NULL;
    }
    if (!as_ssize(args[1], &pos) || !as_ssize(args[2], &end) || !as_ssize(args[3], &hlen) ||
        !as_ssize(args[4], &big) || !as_ssize(args[6], &limit) || !as_ssize(args[7], &ip_off) ||
        !as_ssize(args[8], &etype_off) || !as_ssize(args[12], &last_sec))
        return NULL;
    div = PyFloat_AsDouble(args[5]);
    if (div == -1.0 && PyErr_Occurred())
        return NULL;
    if (pos < 0 || end < pos || end > PyBytes_GET_SIZE(bufobj) || hlen < 16 || limit < 0 ||
        ip_off < 0 || etype_off < -1 || (etype_off >= 0 && etype_off + 2 > ip_off) || div <= 0) {
        PyErr_SetString(PyExc_ValueError, "walk_pcap: arguments out of range");
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(bufobj);
    Walk w = {{NULL, 0, 0, 0, 0.0, 0}, NEED_BYTES, pos, last_sec, {{0}, NULL, 0}};
    while (end - pos >= hlen) {
        const unsigned char *rec = b + pos;
        uint32_t sec = read32(rec, (int)big), frac = read32(rec + 4, (int)big);
        uint32_t caplen = read32(rec + 8, (int)big);
        if ((Py_ssize_t)caplen > limit) {
            w.stop = SLOW;
            break;
        }
        Py_ssize_t nxt = pos + hlen + (Py_ssize_t)caplen;
        if (nxt > end)
            break;
        Py_ssize_t ip = pos + hlen + ip_off;
        if (nxt - ip < 20 || (etype_off >= 0 && read16be(b + pos + hlen + etype_off) != 0x0800)) {
            w.stop = SLOW;
            break;
        }
        double time = (double)sec + (double)frac / div;
        int go = take(&w, b, &pos, nxt, ip, nxt, time, (Py_ssize_t)sec, lanes, pass_over, passable, taker);
        if (go < 0)
            return walk_error(&w);
        if (!go)
            break;
    }
    return finish(&w, pos, pass_over);
}

PyDoc_STRVAR(walk_pcapng_doc,
"walk_pcapng(buf, pos, end, big, links, max_block, lanes, pass_over, passable, take)\n"
"--\n\n"
"Walk pcapng blocks of ``buf`` from ``pos`` while they are Enhanced Packet Blocks for the lane.\n\n"
"``big``: the section's byte order; ``links``: per interface of the section, ``(ip_off,\n"
"etype_off, units, tsoffset)`` as for walk_pcap, with the interface's timestamp units per second\n"
"and offset in seconds, or None for an interface the lane does not read; ``max_block``: the\n"
"longest block taken; ``lanes``, ``pass_over``, ``passable`` and ``take`` as for walk_pcap.\n\n"
"Returns ``(pos, -1, stop, at)`` as walk_pcap does, the block taking the place of the\n"
"record: any block but a whole, well-formed EPB of an interface in ``links`` is for Python.");

/* The link of interface `ifid` from `links`: 1 with its fields, 0 when the lane does not read
 * it (None, or no such interface), -1 on an error. */
static int
ng_link(PyObject *links, uint32_t ifid, Py_ssize_t *ip_off, Py_ssize_t *etype_off, double *units,
        double *tsoffset)
{
    if ((Py_ssize_t)ifid >= PyTuple_GET_SIZE(links))
        return 0;
    PyObject *link = PyTuple_GET_ITEM(links, ifid);
    if (link == Py_None)
        return 0;
    if (!PyTuple_CheckExact(link) || PyTuple_GET_SIZE(link) != 4) {
        PyErr_SetString(PyExc_TypeError, "walk_pcapng: links are (ip_off, etype_off, units, tsoffset) or None");
        return -1;
    }
    if (!as_ssize(PyTuple_GET_ITEM(link, 0), ip_off) || !as_ssize(PyTuple_GET_ITEM(link, 1), etype_off))
        return -1;
    *units = PyFloat_AsDouble(PyTuple_GET_ITEM(link, 2));
    if (*units == -1.0 && PyErr_Occurred())
        return -1;
    *tsoffset = PyFloat_AsDouble(PyTuple_GET_ITEM(link, 3));
    if (*tsoffset == -1.0 && PyErr_Occurred())
        return -1;
    if (*ip_off < 0 || *etype_off < -1 || (*etype_off >= 0 && *etype_off + 2 > *ip_off) || *units <= 0) {
        PyErr_SetString(PyExc_ValueError, "walk_pcapng: arguments out of range");
        return -1;
    }
    return 1;
}

enum { EPB = 6, EPB_HEAD = 28 };

static PyObject *
walk_pcapng(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, end, big, max_block, ip_off, etype_off;
    double units, tsoffset;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "walk_pcapng takes 10 arguments");
        return NULL;
    }
    PyObject *bufobj = args[0], *links = args[4], *lanes = args[6], *pass_over = args[7], *passable = args[8];
    if (!PyBytes_CheckExact(bufobj) || !PyTuple_CheckExact(links) || !PyDict_CheckExact(lanes)) {
        PyErr_SetString(PyExc_TypeError, "walk_pcapng needs bytes, a tuple and a dict");
        return NULL;
    }
    if (!as_ssize(args[1], &pos) || !as_ssize(args[2], &end) || !as_ssize(args[3], &big) ||
        !as_ssize(args[5], &max_block))
        return NULL;
    if (pos < 0 || end < pos || end > PyBytes_GET_SIZE(bufobj) || max_block < 32) {
        PyErr_SetString(PyExc_ValueError, "walk_pcapng: arguments out of range");
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(bufobj);
    Walk w = {{NULL, 0, 0, 0, 0.0, 0}, NEED_BYTES, pos, -1, {{0}, NULL, 0}};
    while (end - pos >= 12) {
        uint32_t btype = read32(b + pos, (int)big), blen = read32(b + pos + 4, (int)big);
        if (btype != EPB || blen < 32 || (blen & 3) || (Py_ssize_t)blen > max_block) {
            w.stop = SLOW;
            break;
        }
        Py_ssize_t nxt = pos + (Py_ssize_t)blen;
        if (nxt > end)
            break;
        uint32_t ifid = read32(b + pos + 8, (int)big), caplen = read32(b + pos + 20, (int)big);
        if (read32(b + nxt - 4, (int)big) != blen || caplen > blen - 32) {
            w.stop = SLOW;
            break;
        }
        int known = ng_link(links, ifid, &ip_off, &etype_off, &units, &tsoffset);
        if (known < 0)
            return walk_error(&w);
        Py_ssize_t frame = pos + EPB_HEAD, frame_end = frame + (Py_ssize_t)caplen, ip = frame + ip_off;
        if (!known || frame_end - ip < 20 || (etype_off >= 0 && read16be(b + frame + etype_off) != 0x0800)) {
            w.stop = SLOW;
            break;
        }
        uint64_t stamp = ((uint64_t)read32(b + pos + 12, (int)big) << 32) | read32(b + pos + 16, (int)big);
        double time = (double)stamp / units + tsoffset;
        int go = take(&w, b, &pos, nxt, ip, frame_end, time, -1, lanes, pass_over, passable, args[9]);
        if (go < 0)
            return walk_error(&w);
        if (!go)
            break;
    }
    return finish(&w, pos, pass_over);
}

static PyMethodDef methods[] = {
    {"walk_pcap", (PyCFunction)(void (*)(void))walk_pcap, METH_FASTCALL, walk_pcap_doc},
    {"walk_pcapng", (PyCFunction)(void (*)(void))walk_pcapng, METH_FASTCALL, walk_pcapng_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "phonehome._lane",
    .m_doc = "The capture reader's fast lane, in C: classic pcap records and pcapng EPBs.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__lane(void)
{
    return PyModule_Create(&module);
}
