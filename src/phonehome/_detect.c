/* phonehome._detect: the detector's walk through one part's views, in C.
 *
 * The same walk as Detector._walk and its helpers in phonehome/detect/scan.py and decoders.py,
 * which stay the reference and the fallback when this module is not built: scan a view (the
 * matcher's hits, checked against their edges, and the digest-shaped tokens looked up in the
 * digest table), then every view one layer below it (decompressed, URL-decoded, JSON-unescaped,
 * base64 and hex tokens decoded), depth first, within the part's budget. What needs Python's own
 * semantics is asked of Python through the callables the Walker is made with: the matcher, the
 * pattern and digest tables, decompression and base64 decoding. Everything else (runs of base64
 * characters, token shapes, URL and JSON escapes, spans, evidence and encoding chains) is here.
 *
 * Every read is bounds-checked against the length of the bytes object it reads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_CHAIN 16

static PyObject *collect_module; /* this module, where `collect` is found */

/* ---------------------------------------------------------------- character classes */

static unsigned char B64[256], HEX[256], DIGIT[256], ALNUM[256];

static void
init_classes(void)
{
    const char *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-";
    for (const char *c = b64; *c; c++)
        B64[(unsigned char)*c] = 1;
    for (const char *c = "0123456789abcdefABCDEF"; *c; c++)
        HEX[(unsigned char)*c] = 1;
    for (const char *c = "0123456789"; *c; c++)
        DIGIT[(unsigned char)*c] = 1;
    for (const char *c = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"; *c; c++)
        ALNUM[(unsigned char)*c] = 1;
}

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* All ASCII digits and at least one byte: bytes.isdigit(). */
static int
all_digits(const unsigned char *p, Py_ssize_t n)
{
    if (n <= 0)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!DIGIT[p[i]])
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- runs */

typedef struct {
    Py_ssize_t *at; /* start, end pairs */
    Py_ssize_t n, cap;
} Runs;

static int
runs_add(Runs *r, Py_ssize_t start, Py_ssize_t end)
{
    if (r->n == r->cap) {
        Py_ssize_t cap = r->cap ? r->cap * 2 : 16;
        Py_ssize_t *at = PyMem_Realloc(r->at, (size_t)cap * 2 * sizeof(Py_ssize_t));
        if (at == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        r->at = at;
        r->cap = cap;
    }
    r->at[2 * r->n] = start;
    r->at[2 * r->n + 1] = end;
    r->n++;
    return 0;
}

/* Every maximal run of bytes of `cls` in p[0:n], at least `least` long (decoders.runs). */
static int
find_runs(const unsigned char *p, Py_ssize_t n, const unsigned char *cls, Py_ssize_t least, Runs *out)
{
    Py_ssize_t i = 0;
    while (i < n) {
        if (!cls[p[i]]) {
            i++;
            continue;
        }
        Py_ssize_t start = i;
        while (i < n && cls[p[i]])
            i++;
        if (i - start >= least && runs_add(out, start, i) < 0)
            return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the walker */

typedef struct {
    PyObject_HEAD
    PyObject *scan;        /* view -> list of (pattern id, end) */
    PyObject *hs_scan;     /* a Hyperscan database's scan method, called with `collect`, or None */
    PyObject *hs_handler;  /* `collect`, passed to it as match_event_handler, with hs_found as context */
    PyObject *hs_found;    /* the list `collect` fills, emptied before each scan */
    PyObject *zero;        /* the scan's flags argument: 0 */
    PyObject *matched;     /* dict: pattern id -> entry (see Detector._entry) */
    PyObject *entry;       /* pattern id -> entry */
    PyObject *digests;     /* raw digest -> list of (ident, form, encoding), or None */
    PyObject *decompress;  /* (kind, data, limit) -> (bytes, warning or None) */
    PyObject *b64decode;   /* the standard alphabet, validated: base64.b64decode(s, validate=True) */
    PyObject *b64url;      /* base64.urlsafe_b64decode */
    PyObject *b64errors;   /* the exceptions a token that does not decode raises */
    PyObject *hit;         /* Hit(ident, form, encoding, evidence) */
    PyObject *messages;    /* (too deep, budget spent, base64 tokens, hex tokens) */
    Py_ssize_t max_depth, max_tokens, min_b64, min_b64_nested, min_hex, context;
    Py_ssize_t budget_bytes, budget_views;
    PyObject *names[8];    /* layer names as str, by LAYER_* */
    PyObject *data_name;   /* "data": a part's bytes */
} Walker;

enum { L_URL, L_JSON, L_BASE64, L_HEX, L_GZIP, L_ZLIB, L_ZSTD, L_COUNT };
static const char *LAYER_NAMES[L_COUNT] = {"url", "json", "base64", "hex", "gzip", "zlib", "zstd"};
#define IN_PLACE(layer) ((layer) == L_URL || (layer) == L_JSON)

/* One part's walk: its budget, what it found, and the warnings given. */
typedef struct {
    Walker *w;
    Py_ssize_t bytes_left, views_left;
    PyObject *found;    /* dict: (ident, encoding) -> Hit, in the order first found */
    PyObject *warnings; /* list of str */
    PyObject *views;    /* list of (chain, view) walked below the top, or NULL: see Walker.views */
} Part;

static int
warn(Part *part, PyObject *message)
{
    int seen = PySequence_Contains(part->warnings, message);
    if (seen < 0)
        return -1;
    return seen ? 0 : PyList_Append(part->warnings, message);
}

/* ---------------------------------------------------------------- spans and hits */

typedef struct {
    Py_ssize_t ident, start, end, order;
    PyObject *form;     /* borrowed from an entry or a digest row, kept alive by `keep` */
    PyObject *encoding; /* likewise; base64-wrapped digests are new strings held in `keep` */
} Span;

typedef struct {
    Span *s;
    Py_ssize_t n, cap;
    PyObject *keep; /* list holding what the spans borrow */
} Spans;

static int
spans_add(Spans *sp, Py_ssize_t ident, Py_ssize_t start, Py_ssize_t end, PyObject *form, PyObject *encoding)
{
    if (sp->n == sp->cap) {
        Py_ssize_t cap = sp->cap ? sp->cap * 2 : 16;
        Span *s = PyMem_Realloc(sp->s, (size_t)cap * sizeof(Span));
        if (s == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        sp->s = s;
        sp->cap = cap;
    }
    Span *x = &sp->s[sp->n];
    x->ident = ident;
    x->start = start;
    x->end = end;
    x->order = sp->n;
    x->form = form;
    x->encoding = encoding;
    sp->n++;
    return 0;
}

/* A span per (ident, form, encoding) row found at [start, end): a pattern's needles, or a digest's
 * rows. With `b64`, each row's encoding is wrapped as "base64(...)", a new string kept in `keep`.
 * The rows are borrowed: their owner must be held in `keep` too. */
static int
spans_add_rows(Spans *sp, PyObject *const *rows, Py_ssize_t n, Py_ssize_t start, Py_ssize_t end, int b64,
               const char *what)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = rows[i];
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 3) {
            PyErr_Format(PyExc_TypeError, "%s must be (ident, form, encoding)", what);
            return -1;
        }
        Py_ssize_t ident = PyLong_AsSsize_t(PyTuple_GET_ITEM(row, 0));
        if (ident == -1 && PyErr_Occurred())
            return -1;
        PyObject *encoding = PyTuple_GET_ITEM(row, 2);
        if (b64) {
            encoding = PyUnicode_FromFormat("base64(%U)", encoding);
            if (encoding == NULL)
                return -1;
            int kept = PyList_Append(sp->keep, encoding);
            Py_DECREF(encoding);
            if (kept < 0)
                return -1;
        }
        if (spans_add(sp, ident, start, end, PyTuple_GET_ITEM(row, 1), encoding) < 0)
            return -1;
    }
    return 0;
}

/* Python's sort by (ident, start, -end) is stable: the order spans were added breaks ties. */
static int
span_cmp(const void *a, const void *b)
{
    const Span *x = a, *y = b;
    if (x->ident != y->ident)
        return x->ident < y->ident ? -1 : 1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->end != y->end)
        return x->end > y->end ? -1 : 1;
    return x->order < y->order ? -1 : (x->order > y->order);
}

/* scan.escape_bytes into `out` (room for 4 per byte): printable ASCII but backslash kept. */
static Py_ssize_t
escape_into(Py_UCS4 *out, const unsigned char *p, Py_ssize_t n)
{
    static const char digits[] = "0123456789abcdef";
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7F && c != '\\')
            out[k++] = c;
        else {
            out[k++] = '\\';
            out[k++] = 'x';
            out[k++] = (Py_UCS4)digits[c >> 4];
            out[k++] = (Py_UCS4)digits[c & 15];
        }
    }
    return k;
}

/* scan.evidence: the match between « », with up to `context` bytes each side. */
static PyObject *
evidence(const unsigned char *p, Py_ssize_t size, Py_ssize_t start, Py_ssize_t end, Py_ssize_t context)
{
    Py_ssize_t lo = start - context > 0 ? start - context : 0;
    Py_ssize_t hi = end + context < size ? end + context : size;
    Py_UCS4 *buf = PyMem_Malloc((size_t)(4 * (hi - lo) + 4) * sizeof(Py_UCS4));
    if (buf == NULL)
        return PyErr_NoMemory();
    Py_ssize_t k = 0;
    if (lo)
        buf[k++] = 0x2026;
    k += escape_into(buf + k, p + lo, start - lo);
    buf[k++] = 0xAB;
    k += escape_into(buf + k, p + start, end - start);
    buf[k++] = 0xBB;
    k += escape_into(buf + k, p + end, hi - end);
    if (hi < size)
        buf[k++] = 0x2026;
    PyObject *text = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, k);
    PyMem_Free(buf);
    return text;
}

/* scan.wrap_chain: ("base64", "gzip") around "md5" is "base64(gzip(md5))"; "plain" the identity. */
static PyObject *
wrap_chain(Walker *w, const int *chain, int depth, PyObject *inner)
{
    int plain = PyUnicode_GET_LENGTH(inner) == 0 || PyUnicode_CompareWithASCIIString(inner, "plain") == 0;
    if (depth == 0)
        return plain ? PyUnicode_FromString("plain") : Py_NewRef(inner);
    PyObject *text = plain ? NULL : Py_NewRef(inner);
    for (int i = depth - 1; i >= 0; i--) {
        PyObject *layer = w->names[chain[i]];
        PyObject *next = text == NULL ? Py_NewRef(layer) : PyUnicode_FromFormat("%U(%U)", layer, text);
        Py_XDECREF(text);
        if (next == NULL)
            return NULL;
        text = next;
    }
    return text;
}

/* ---------------------------------------------------------------- scanning one view */

/* The edge of a match is part of a longer token when the neighbouring byte is of its class:
 * 1 digits, 2 letters and digits (Detector._entry). */
static int
glued(int cls, unsigned char c)
{
    return (cls == 1 && DIGIT[c]) || (cls == 2 && ALNUM[c]);
}

static int
matcher_spans(Walker *w, PyObject *view, const unsigned char *p, Py_ssize_t size, Spans *sp)
{
    PyObject *found;
    if (w->hs_scan != Py_None) {
        /* Straight to the database, its matches gathered by `collect` without a Python frame. */
        if (PyList_SetSlice(w->hs_found, 0, PyList_GET_SIZE(w->hs_found), NULL) < 0)
            return -1;
        /* scan(data, match_event_handler, flags, context), all positional: the binding parses
         * keywords at twice the cost of the whole scan of a short part. */
        PyObject *args[4] = {view, w->hs_handler, w->zero, w->hs_found};
        PyObject *done = PyObject_Vectorcall(w->hs_scan, args, 4, NULL);
        if (done == NULL)
            return -1;
        Py_DECREF(done);
        found = Py_NewRef(w->hs_found);
    }
    else
        found = PyObject_CallOneArg(w->scan, view);
    if (found == NULL)
        return -1;
    PyObject *seq = PySequence_Fast(found, "the matcher must return a sequence");
    Py_DECREF(found);
    if (seq == NULL)
        return -1;
    int rc = -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "matches must be (pattern id, end) tuples");
            goto done;
        }
        PyObject *pid = PyTuple_GET_ITEM(item, 0);
        Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 1));
        if (end == -1 && PyErr_Occurred())
            goto done;
        PyObject *entry = PyDict_GetItemWithError(w->matched, pid); /* borrowed */
        if (entry == NULL) {
            if (PyErr_Occurred())
                goto done;
            PyObject *made = PyObject_CallOneArg(w->entry, pid);
            if (made == NULL)
                goto done;
            if (PyDict_SetItem(w->matched, pid, made) < 0) {
                Py_DECREF(made);
                goto done;
            }
            Py_DECREF(made);
            entry = PyDict_GetItemWithError(w->matched, pid);
            if (entry == NULL)
                goto done;
        }
        if (PyList_Append(sp->keep, entry) < 0)
            goto done;
        Py_ssize_t length, before, after;
        int bounded;
        PyObject *needles;
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 5) {
            PyErr_SetString(PyExc_TypeError, "pattern entries must be 5-tuples");
            goto done;
        }
        length = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 0));
        before = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 1));
        after = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 2));
        if (PyErr_Occurred())
            goto done;
        bounded = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 3));
        if (bounded < 0)
            goto done;
        needles = PyTuple_GET_ITEM(entry, 4);
        Py_ssize_t start = end - length;
        if (start < 0 || end > size) {
            PyErr_SetString(PyExc_ValueError, "a match outside the view");
            goto done;
        }
        if (bounded && ((start > 0 && glued((int)before, p[start - 1])) || (end < size && glued((int)after, p[end]))))
            continue;
        if (!PyTuple_Check(needles)) {
            PyErr_SetString(PyExc_TypeError, "pattern needles must be a tuple");
            goto done;
        }
        if (spans_add_rows(sp, PySequence_Fast_ITEMS(needles), PyTuple_GET_SIZE(needles), start, end, 0,
                           "needles") < 0)
            goto done;
    }
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

/* One digest-shaped token: look its bytes up and add a span per row. */
static int
digest_token(Walker *w, Spans *sp, Py_ssize_t start, Py_ssize_t end, const unsigned char *raw, Py_ssize_t n,
             int b64)
{
    PyObject *key = PyBytes_FromStringAndSize((const char *)raw, n);
    if (key == NULL)
        return -1;
    PyObject *rows = PyObject_CallOneArg(w->digests, key);
    Py_DECREF(key);
    if (rows == NULL)
        return -1;
    PyObject *seq = PySequence_Fast(rows, "digest rows must be a sequence");
    Py_DECREF(rows);
    if (seq == NULL)
        return -1;
    int rc = -1;
    if (PyList_Append(sp->keep, seq) < 0)
        goto done;
    if (spans_add_rows(sp, PySequence_Fast_ITEMS(seq), PySequence_Fast_GET_SIZE(seq), start, end, b64,
                       "digest rows") < 0)
        goto done;
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

static int
b64_char_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    return 63; /* '/' or '_' */
}

/* scan.digest_tokens: hex of 16, 20 or 32 bytes bounded by non-alphanumerics, and base64 of as
 * many, with or without padding, bounded by bytes outside base64. */
static int
digest_spans(Walker *w, const unsigned char *p, Py_ssize_t size, const Runs *b64, Spans *sp)
{
    unsigned char raw[48];
    for (Py_ssize_t r = 0; r < b64->n; r++) {
        Py_ssize_t start = b64->at[2 * r], run_end = b64->at[2 * r + 1], len = run_end - start;
        if (len < 22)
            continue;
        Py_ssize_t end = run_end;
        while (end < size && p[end] == '=')
            end++;
        Py_ssize_t pad = end - run_end;
        if (len >= 32) {
            /* Hex: the pieces of the run between "+/_-". */
            Py_ssize_t at = start;
            while (at <= run_end) {
                Py_ssize_t piece_end = at;
                while (piece_end < run_end && ALNUM[p[piece_end]])
                    piece_end++;
                Py_ssize_t plen = piece_end - at;
                if (plen == 32 || plen == 40 || plen == 64) {
                    int hex = 1;
                    for (Py_ssize_t i = at; i < piece_end; i++)
                        if (!HEX[p[i]]) {
                            hex = 0;
                            break;
                        }
                    if (hex) {
                        for (Py_ssize_t i = 0; i < plen / 2; i++)
                            raw[i] = (unsigned char)(hexval(p[at + 2 * i]) << 4 | hexval(p[at + 2 * i + 1]));
                        if (digest_token(w, sp, at, piece_end, raw, plen / 2, 0) < 0)
                            return -1;
                    }
                }
                at = piece_end + 1;
            }
        }
        /* Base64: the whole run, with the padding its length allows and nothing glued after it. */
        int pad_ok = (len == 22 && (pad == 0 || pad == 2)) || ((len == 27 || len == 43) && (pad == 0 || pad == 1));
        if (pad_ok && !(end < size && (ALNUM[p[end]] || B64[p[end]] || p[end] == '='))) {
            Py_ssize_t n = len * 6 / 8;
            uint32_t acc = 0;
            int bits = 0;
            Py_ssize_t k = 0;
            for (Py_ssize_t i = start; i < run_end && k < n; i++) {
                acc = (acc << 6) | (uint32_t)b64_char_value(p[i]);
                bits += 6;
                if (bits >= 8) {
                    bits -= 8;
                    raw[k++] = (unsigned char)(acc >> bits);
                }
            }
            if (digest_token(w, sp, start, end, raw, n, 1) < 0)
                return -1;
        }
    }
    return 0;
}

/* Detector._scan_view: every acceptable match in the view, one hit per occurrence; `keys` gets
 * the (ident, encoding) of each. */
static PyObject *
scan_view(Walker *w, PyObject *view, const int *chain, int depth, const Runs *b64, PyObject *keys)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(view);
    Py_ssize_t size = PyBytes_GET_SIZE(view);
    PyObject *hits = PyList_New(0);
    if (hits == NULL || size == 0)
        return hits;
    Spans sp = {NULL, 0, 0, PyList_New(0)};
    if (sp.keep == NULL)
        goto fail;
    if (matcher_spans(w, view, p, size, &sp) < 0)
        goto fail;
    if (w->digests != Py_None && b64->n && digest_spans(w, p, size, b64, &sp) < 0)
        goto fail;
    if (sp.n > 1)
        qsort(sp.s, (size_t)sp.n, sizeof(Span), span_cmp);
    Py_ssize_t last_ident = -1, last_end = -1;
    for (Py_ssize_t i = 0; i < sp.n; i++) {
        Span *s = &sp.s[i];
        if (s->ident == last_ident && s->end <= last_end)
            continue;
        last_end = s->ident == last_ident ? (s->end > last_end ? s->end : last_end) : s->end;
        last_ident = s->ident;
        PyObject *ident = PyLong_FromSsize_t(s->ident);
        PyObject *encoding = wrap_chain(w, chain, depth, s->encoding);
        PyObject *text = evidence(p, size, s->start, s->end, w->context);
        PyObject *hit = NULL, *key = NULL;
        if (ident != NULL && encoding != NULL && text != NULL) {
            hit = PyObject_CallFunctionObjArgs(w->hit, ident, s->form, encoding, text, NULL);
            key = PyTuple_Pack(2, ident, encoding);
        }
        Py_XDECREF(ident);
        Py_XDECREF(encoding);
        Py_XDECREF(text);
        int added = hit != NULL && key != NULL && PyList_Append(hits, hit) == 0 && PyList_Append(keys, key) == 0;
        Py_XDECREF(hit);
        Py_XDECREF(key);
        if (!added)
            goto fail;
    }
    PyMem_Free(sp.s);
    Py_DECREF(sp.keep);
    return hits;
fail:
    PyMem_Free(sp.s);
    Py_XDECREF(sp.keep);
    Py_XDECREF(hits);
    return NULL;
}

/* ---------------------------------------------------------------- one layer below */

/* A step of decoders.layer_below: a view (layer and bytes) or, with layer -1, a warning. */
typedef struct {
    int layer;
    PyObject *obj;
} Step;

typedef struct {
    Step *s;
    Py_ssize_t n, cap;
} Steps;

/* Takes the reference to `obj`. */
static int
steps_add(Steps *st, int layer, PyObject *obj)
{
    if (st->n == st->cap) {
        Py_ssize_t cap = st->cap ? st->cap * 2 : 8;
        Step *s = PyMem_Realloc(st->s, (size_t)cap * sizeof(Step));
        if (s == NULL) {
            Py_DECREF(obj);
            PyErr_NoMemory();
            return -1;
        }
        st->s = s;
        st->cap = cap;
    }
    st->s[st->n].layer = layer;
    st->s[st->n].obj = obj;
    st->n++;
    return 0;
}

static void
steps_clear(Steps *st)
{
    for (Py_ssize_t i = 0; i < st->n; i++)
        Py_DECREF(st->s[i].obj);
    PyMem_Free(st->s);
}

/* compression.sniff_compression: L_GZIP, L_ZSTD, L_ZLIB or -1. */
static int
sniff(const unsigned char *p, Py_ssize_t n)
{
    if (n >= 3 && p[0] == 0x1f && p[1] == 0x8b && p[2] == 0x08)
        return L_GZIP;
    if (n >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd)
        return L_ZSTD;
    if (n >= 2) {
        unsigned cmf = p[0], flg = p[1];
        if ((cmf & 0x0F) == 8 && cmf >> 4 <= 7 && (cmf * 256 + flg) % 31 == 0 && !(flg & 0x20))
            return L_ZLIB;
    }
    return -1;
}

static int
compressed_step(Part *part, PyObject *view, const unsigned char *p, Py_ssize_t n, Steps *st)
{
    int kind = sniff(p, n);
    if (kind < 0)
        return 0;
    Walker *w = part->w;
    PyObject *name = PyUnicode_FromString(kind == L_ZLIB ? "deflate" : LAYER_NAMES[kind]);
    PyObject *limit = PyLong_FromSsize_t(part->bytes_left > 0 ? part->bytes_left : 0);
    PyObject *result = NULL;
    if (name != NULL && limit != NULL)
        result = PyObject_CallFunctionObjArgs(w->decompress, name, view, limit, NULL);
    Py_XDECREF(name);
    Py_XDECREF(limit);
    if (result == NULL)
        return -1;
    if (!PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(result, 0))) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_TypeError, "decompress must return (bytes, warning)");
        return -1;
    }
    PyObject *out = PyTuple_GET_ITEM(result, 0), *warning = PyTuple_GET_ITEM(result, 1);
    int rc = 0;
    if (PyObject_IsTrue(warning) == 1)
        rc = steps_add(st, -1, Py_NewRef(warning));
    if (rc == 0 && PyBytes_GET_SIZE(out))
        rc = steps_add(st, kind, Py_NewRef(out));
    Py_DECREF(result);
    return rc;
}

/* decoders._url: unquote_to_bytes(data.replace(b"+", b" ")), where a %XX escape shows. */
static int
url_step(const unsigned char *p, Py_ssize_t n, Steps *st)
{
    int escaped = 0;
    for (Py_ssize_t i = 0; i + 2 < n; i++)
        if (p[i] == '%' && HEX[p[i + 1]] && HEX[p[i + 2]]) {
            escaped = 1;
            break;
        }
    if (!escaped)
        return 0;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return -1;
    unsigned char *q = (unsigned char *)PyBytes_AS_STRING(out);
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n && HEX[p[i + 1]] && HEX[p[i + 2]]) {
            q[k++] = (unsigned char)(hexval(p[i + 1]) << 4 | hexval(p[i + 2]));
            i += 2;
        }
        else
            q[k++] = p[i] == '+' ? ' ' : p[i];
    }
    if (_PyBytes_Resize(&out, k) < 0)
        return -1;
    return steps_add(st, L_URL, out);
}

/* The replacement of a JSON escape at p[i] (decoders._JSON_ESCAPE and _json_unescape_one): its
 * length in the input, or 0 where no escape starts; the bytes it stands for in `rep`. */
static Py_ssize_t
json_escape(const unsigned char *p, Py_ssize_t n, Py_ssize_t i, unsigned char *rep, Py_ssize_t *rep_len)
{
    if (i + 1 >= n || p[i] != '\\')
        return 0;
    unsigned char c = p[i + 1];
    if (c == 'u') {
        if (i + 6 > n || !HEX[p[i + 2]] || !HEX[p[i + 3]] || !HEX[p[i + 4]] || !HEX[p[i + 5]])
            return 0;
        unsigned code = (unsigned)(hexval(p[i + 2]) << 12 | hexval(p[i + 3]) << 8 | hexval(p[i + 4]) << 4 |
                                   hexval(p[i + 5]));
        if (code >= 0xD800 && code <= 0xDFFF) { /* a lone surrogate half: left as written */
            memcpy(rep, p + i, 6);
            *rep_len = 6;
        }
        else if (code < 0x80) {
            rep[0] = (unsigned char)code;
            *rep_len = 1;
        }
        else if (code < 0x800) {
            rep[0] = (unsigned char)(0xC0 | code >> 6);
            rep[1] = (unsigned char)(0x80 | (code & 0x3F));
            *rep_len = 2;
        }
        else {
            rep[0] = (unsigned char)(0xE0 | code >> 12);
            rep[1] = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
            rep[2] = (unsigned char)(0x80 | (code & 0x3F));
            *rep_len = 3;
        }
        return 6;
    }
    static const char from[] = "/\"\\bfnrt", to[] = "/\"\\\b\f\n\r\t";
    const char *at = c ? strchr(from, c) : NULL;
    if (at == NULL)
        return 0;
    rep[0] = (unsigned char)to[at - from];
    *rep_len = 1;
    return 2;
}

static int
json_step(const unsigned char *p, Py_ssize_t n, Steps *st)
{
    unsigned char rep[6];
    Py_ssize_t rep_len, first = -1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] == '\\' && json_escape(p, n, i, rep, &rep_len)) {
            first = i;
            break;
        }
    if (first < 0)
        return 0;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return -1;
    unsigned char *q = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(q, p, (size_t)first);
    Py_ssize_t k = first;
    for (Py_ssize_t i = first; i < n;) {
        Py_ssize_t used = p[i] == '\\' ? json_escape(p, n, i, rep, &rep_len) : 0;
        if (used) {
            memcpy(q + k, rep, (size_t)rep_len);
            k += rep_len;
            i += used;
        }
        else
            q[k++] = p[i++];
    }
    if (_PyBytes_Resize(&out, k) < 0)
        return -1;
    return steps_add(st, L_JSON, out);
}

/* decoders._base64: each maximal run long enough, decoded by Python's own base64 functions. */
static int
base64_step(Part *part, const unsigned char *p, const Runs *b64, int depth, Steps *st)
{
    Walker *w = part->w;
    Py_ssize_t least = depth ? w->min_b64_nested : w->min_b64, count = 0;
    for (Py_ssize_t r = 0; r < b64->n; r++) {
        Py_ssize_t start = b64->at[2 * r], len = b64->at[2 * r + 1] - start;
        if (len < least)
            continue;
        if (count >= w->max_tokens)
            return steps_add(st, -1, Py_NewRef(PyTuple_GET_ITEM(w->messages, 2)));
        count++;
        if (all_digits(p + start, len))
            continue; /* a long number, not base64 */
        if (len % 4 == 1)
            len--;
        int urlsafe = 0;
        for (Py_ssize_t i = start; i < start + len; i++)
            if (p[i] == '-' || p[i] == '_') {
                urlsafe = 1;
                break;
            }
        Py_ssize_t padded = len + (4 - len % 4) % 4;
        PyObject *token = PyBytes_FromStringAndSize(NULL, padded);
        if (token == NULL)
            return -1;
        char *t = PyBytes_AS_STRING(token);
        memcpy(t, p + start, (size_t)len);
        memset(t + len, '=', (size_t)(padded - len));
        PyObject *decoded = PyObject_CallOneArg(urlsafe ? w->b64url : w->b64decode, token);
        Py_DECREF(token);
        if (decoded == NULL) {
            if (!PyErr_ExceptionMatches(w->b64errors))
                return -1;
            PyErr_Clear();
            continue;
        }
        if (steps_add(st, L_BASE64, decoded) < 0)
            return -1;
    }
    return 0;
}

/* decoders._hex: each maximal even run of hex digits long enough, inside the base64 runs. */
static int
hex_step(Part *part, const unsigned char *p, const Runs *b64, Steps *st)
{
    Walker *w = part->w;
    Py_ssize_t count = 0;
    for (Py_ssize_t r = 0; r < b64->n; r++) {
        Py_ssize_t i = b64->at[2 * r], run_end = b64->at[2 * r + 1];
        if (run_end - i < w->min_hex)
            continue;
        while (i < run_end) {
            if (!HEX[p[i]]) {
                i++;
                continue;
            }
            Py_ssize_t start = i;
            while (i < run_end && HEX[p[i]])
                i++;
            Py_ssize_t len = i - start;
            if (len < w->min_hex || len % 2)
                continue;
            if (count >= w->max_tokens)
                return steps_add(st, -1, Py_NewRef(PyTuple_GET_ITEM(w->messages, 3)));
            count++;
            if (all_digits(p + start, len))
                continue;
            PyObject *out = PyBytes_FromStringAndSize(NULL, len / 2);
            if (out == NULL)
                return -1;
            unsigned char *q = (unsigned char *)PyBytes_AS_STRING(out);
            for (Py_ssize_t k = 0; k < len / 2; k++)
                q[k] = (unsigned char)(hexval(p[start + 2 * k]) << 4 | hexval(p[start + 2 * k + 1]));
            if (steps_add(st, L_HEX, out) < 0)
                return -1;
        }
    }
    return 0;
}

/* decoders.layer_below, in DECODERS order: compressed, url, json, base64, hex. */
static int
layer_below(Part *part, PyObject *view, int depth, const Runs *b64, Steps *st)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(view);
    Py_ssize_t n = PyBytes_GET_SIZE(view);
    if (compressed_step(part, view, p, n, st) < 0)
        return -1;
    if (memchr(p, '%', (size_t)n) && url_step(p, n, st) < 0)
        return -1;
    if (memchr(p, '\\', (size_t)n) && json_step(p, n, st) < 0)
        return -1;
    if (base64_step(part, p, b64, depth, st) < 0)
        return -1;
    return hex_step(part, p, b64, st);
}

/* decoders.too_deep: at the depth, warn where another layer is plain to see. */
static int
too_deep(Part *part, const unsigned char *p, Py_ssize_t n)
{
    int more = sniff(p, n) >= 0;
    if (!more && n >= part->w->min_b64 && !all_digits(p, n)) {
        Py_ssize_t i = 0;
        while (i < n && B64[p[i]])
            i++;
        Py_ssize_t pad = 0;
        while (i + pad < n && p[i + pad] == '=')
            pad++;
        more = i >= part->w->min_b64 && i + pad == n && pad <= 2;
    }
    return more ? warn(part, PyTuple_GET_ITEM(part->w->messages, 0)) : 0;
}

/* ---------------------------------------------------------------- the walk */

/* Note the view below chain[:depth] by `layer`, as decoders.peel yields it: (chain, view). */
static int
record_view(Part *part, const int *chain, int depth, int layer, PyObject *view)
{
    PyObject *names = PyTuple_New(depth + 1);
    if (names == NULL)
        return -1;
    for (int i = 0; i <= depth; i++)
        PyTuple_SET_ITEM(names, i, Py_NewRef(part->w->names[i < depth ? chain[i] : layer]));
    PyObject *pair = PyTuple_Pack(2, names, view);
    Py_DECREF(names);
    if (pair == NULL)
        return -1;
    int rc = PyList_Append(part->views, pair);
    Py_DECREF(pair);
    return rc;
}

/* Detector._walk: scan `view`, then walk each view below it. `parent`: the identifiers the view
 * this one was decoded from in place showed, or NULL. Returns -1 on a Python error, else 0. */
static int
walk(Part *part, PyObject *view, int *chain, int depth, PyObject *parent)
{
    Walker *w = part->w;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(view);
    Py_ssize_t n = PyBytes_GET_SIZE(view);
    Runs b64 = {NULL, 0, 0};
    Steps st = {NULL, 0, 0};
    PyObject *hits = NULL, *seen = NULL, *keys = NULL;
    int rc = -1;
    if (find_runs(p, n, B64, w->min_b64_nested, &b64) < 0)
        goto done;
    keys = PyList_New(0);
    if (keys == NULL)
        goto done;
    hits = scan_view(w, view, chain, depth, &b64, keys);
    if (hits == NULL)
        goto done;
    seen = PySet_New(NULL);
    if (seen == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(hits); i++) {
        PyObject *key = PyList_GET_ITEM(keys, i), *ident = PyTuple_GET_ITEM(key, 0);
        int inside = parent == NULL ? 0 : PySet_Contains(parent, ident);
        if (inside < 0 || PySet_Add(seen, ident) < 0)
            goto done;
        if (!inside && PyDict_SetDefault(part->found, key, PyList_GET_ITEM(hits, i)) == NULL)
            goto done;
    }
    if (parent != NULL) {
        PyObject *it = PyObject_GetIter(parent), *item;
        if (it == NULL)
            goto done;
        while ((item = PyIter_Next(it)) != NULL) {
            int added = PySet_Add(seen, item);
            Py_DECREF(item);
            if (added < 0)
                break;
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            goto done;
    }
    if (depth >= w->max_depth) {
        rc = too_deep(part, p, n);
        goto done;
    }
    if (layer_below(part, view, depth, &b64, &st) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < st.n; i++) {
        Step *s = &st.s[i];
        if (s->layer < 0) {
            if (warn(part, s->obj) < 0)
                goto done;
            continue;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(s->obj);
        if (size == 0 || (size == n && memcmp(PyBytes_AS_STRING(s->obj), p, (size_t)n) == 0))
            continue;
        if (part->views_left <= 0 || part->bytes_left < size) {
            rc = warn(part, PyTuple_GET_ITEM(w->messages, 1));
            goto done;
        }
        part->views_left--;
        part->bytes_left -= size;
        if (part->views != NULL && record_view(part, chain, depth, s->layer, s->obj) < 0)
            goto done;
        if (depth + 1 >= MAX_CHAIN) {
            PyErr_SetString(PyExc_ValueError, "max_depth is beyond what the walk can hold");
            goto done;
        }
        chain[depth] = s->layer;
        if (walk(part, s->obj, chain, depth + 1, IN_PLACE(s->layer) ? seen : NULL) < 0)
            goto done;
    }
    rc = 0;
done:
    PyMem_Free(b64.at);
    steps_clear(&st);
    Py_XDECREF(hits);
    Py_XDECREF(keys);
    Py_XDECREF(seen);
    return rc;
}

/* A part's walk: (hits, warnings), and with `views` set, the views walked below the top. */
static PyObject *
run_walk(Walker *self, PyObject *data, int views)
{
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "the walk takes bytes");
        return NULL;
    }
    Part part = {self, self->budget_bytes, self->budget_views, PyDict_New(), PyList_New(0), NULL};
    PyObject *result = NULL;
    int chain[MAX_CHAIN];
    if (views && (part.views = PyList_New(0)) == NULL)
        goto done;
    if (part.found != NULL && part.warnings != NULL && walk(&part, data, chain, 0, NULL) == 0) {
        PyObject *hits = PyDict_Values(part.found);
        if (hits != NULL)
            result = views ? Py_NewRef(part.views) : PyTuple_Pack(2, hits, part.warnings);
        Py_XDECREF(hits);
    }
done:
    Py_XDECREF(part.found);
    Py_XDECREF(part.warnings);
    Py_XDECREF(part.views);
    return result;
}

static PyObject *
Walker_walk(Walker *self, PyObject *data)
{
    return run_walk(self, data, 0);
}

/* Detector.scan of one part's bytes: from `recent` (bytes -> (hits, warnings) tuples) when it was
 * seen there, else walked, and kept there when it is at most `max_size` bytes, `recent` emptied
 * first once it holds `max_entries`. A new reference. */
static PyObject *
scan_one(Walker *self, PyObject *data, PyObject *recent, Py_ssize_t max_size, Py_ssize_t max_entries)
{
    int small = PyBytes_GET_SIZE(data) <= max_size;
    if (small) {
        PyObject *known = PyDict_GetItemWithError(recent, data); /* borrowed */
        if (known != NULL)
            return Py_NewRef(known);
        if (PyErr_Occurred())
            return NULL;
    }
    PyObject *walked = run_walk(self, data, 0);
    if (walked == NULL || !small)
        return walked;
    PyObject *hits = PySequence_Tuple(PyTuple_GET_ITEM(walked, 0));
    PyObject *notes = PySequence_Tuple(PyTuple_GET_ITEM(walked, 1));
    Py_DECREF(walked);
    PyObject *entry = hits != NULL && notes != NULL ? PyTuple_Pack(2, hits, notes) : NULL;
    Py_XDECREF(hits);
    Py_XDECREF(notes);
    if (entry == NULL)
        return NULL;
    if (PyDict_GET_SIZE(recent) >= max_entries)
        PyDict_Clear(recent);
    if (PyDict_SetItem(recent, data, entry) < 0) {
        Py_DECREF(entry);
        return NULL;
    }
    return entry;
}

/* Detector.scan_parts: (index, hits, warnings) of each part whose bytes give any. */
static PyObject *
Walker_scan_parts(Walker *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "scan_parts(parts, recent: dict, max_size, max_entries)");
        return NULL;
    }
    Py_ssize_t max_size = PyLong_AsSsize_t(args[2]), max_entries = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *parts = PySequence_Fast(args[0], "parts must be a sequence");
    if (parts == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < PySequence_Fast_GET_SIZE(parts); i++) {
        PyObject *data = PyObject_GetAttr(PySequence_Fast_GET_ITEM(parts, i), self->data_name);
        if (data == NULL || !PyBytes_Check(data)) {
            if (data != NULL)
                PyErr_SetString(PyExc_TypeError, "a part's data must be bytes");
            Py_XDECREF(data);
            Py_CLEAR(out);
            break;
        }
        PyObject *found = scan_one(self, data, args[1], max_size, max_entries);
        Py_DECREF(data);
        if (found == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyObject *hits = PyTuple_GET_ITEM(found, 0), *notes = PyTuple_GET_ITEM(found, 1);
        if (PyObject_Length(hits) || PyObject_Length(notes)) {
            PyObject *row = Py_BuildValue("(nOO)", i, hits, notes);
            if (row == NULL || PyList_Append(out, row) < 0)
                Py_CLEAR(out);
            Py_XDECREF(row);
        }
        Py_DECREF(found);
    }
    Py_DECREF(parts);
    return out;
}

static PyObject *
Walker_views(Walker *self, PyObject *data)
{
    return run_walk(self, data, 1);
}

/* A Hyperscan match event handler: (id, from, to, flags, context) -> append (id, to) to the
 * context list; None, so that scanning goes on. */
static PyObject *
collect(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyList_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "collect(id, from, to, flags, context: list)");
        return NULL;
    }
    PyObject *match = PyTuple_Pack(2, args[0], args[2]);
    if (match == NULL)
        return NULL;
    int rc = PyList_Append(args[4], match);
    Py_DECREF(match);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- the type */

static int
Walker_init(Walker *self, PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"scan", "hs_scan", "matched", "entry", "digests", "decompress", "b64decode", "b64url", "b64errors",
                         "hit", "messages", "max_depth", "max_tokens", "min_b64", "min_b64_nested", "min_hex",
                         "context", "budget_bytes", "budget_views", NULL};
    PyObject *scan, *hs_scan, *matched, *entry, *digests, *decompress, *b64decode, *b64url, *b64errors, *hit,
        *messages;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!OOOOOOOO!nnnnnnnn", kw, &scan, &hs_scan, &PyDict_Type, &matched,
                                     &entry,
                                     &digests, &decompress, &b64decode, &b64url, &b64errors, &hit, &PyTuple_Type,
                                     &messages, &self->max_depth, &self->max_tokens, &self->min_b64,
                                     &self->min_b64_nested, &self->min_hex, &self->context, &self->budget_bytes,
                                     &self->budget_views))
        return -1;
    if (PyTuple_GET_SIZE(messages) != 4) {
        PyErr_SetString(PyExc_ValueError, "messages: (too deep, budget spent, base64 tokens, hex tokens)");
        return -1;
    }
    for (Py_ssize_t i = 0; i < 4; i++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(messages, i))) {
            PyErr_SetString(PyExc_TypeError, "messages must be str");
            return -1;
        }
    if (self->max_depth < 0 || self->max_depth >= MAX_CHAIN) {
        PyErr_SetString(PyExc_ValueError, "max_depth out of range");
        return -1;
    }
    Py_XSETREF(self->scan, Py_NewRef(scan));
    Py_XSETREF(self->hs_scan, Py_NewRef(hs_scan));
    PyObject *found = PyList_New(0), *handler = PyObject_GetAttrString(collect_module, "collect");
    PyObject *zero = PyLong_FromLong(0);
    if (found == NULL || handler == NULL || zero == NULL) {
        Py_XDECREF(found);
        Py_XDECREF(handler);
        Py_XDECREF(zero);
        return -1;
    }
    Py_XSETREF(self->hs_found, found);
    Py_XSETREF(self->hs_handler, handler);
    Py_XSETREF(self->zero, zero);
    Py_XSETREF(self->matched, Py_NewRef(matched));
    Py_XSETREF(self->entry, Py_NewRef(entry));
    Py_XSETREF(self->digests, Py_NewRef(digests));
    Py_XSETREF(self->decompress, Py_NewRef(decompress));
    Py_XSETREF(self->b64decode, Py_NewRef(b64decode));
    Py_XSETREF(self->b64url, Py_NewRef(b64url));
    Py_XSETREF(self->b64errors, Py_NewRef(b64errors));
    Py_XSETREF(self->hit, Py_NewRef(hit));
    Py_XSETREF(self->messages, Py_NewRef(messages));
    for (int i = 0; i < L_COUNT; i++) {
        PyObject *name = PyUnicode_InternFromString(LAYER_NAMES[i]);
        if (name == NULL)
            return -1;
        Py_XSETREF(self->names[i], name);
    }
    PyObject *data_name = PyUnicode_InternFromString("data");
    if (data_name == NULL)
        return -1;
    Py_XSETREF(self->data_name, data_name);
    return 0;
}

static int
Walker_traverse(Walker *self, visitproc visit, void *arg)
{
    Py_VISIT(self->scan);
    Py_VISIT(self->hs_scan);
    Py_VISIT(self->hs_handler);
    Py_VISIT(self->zero);
    Py_VISIT(self->hs_found);
    Py_VISIT(self->matched);
    Py_VISIT(self->entry);
    Py_VISIT(self->digests);
    Py_VISIT(self->decompress);
    Py_VISIT(self->b64decode);
    Py_VISIT(self->b64url);
    Py_VISIT(self->b64errors);
    Py_VISIT(self->hit);
    Py_VISIT(self->messages);
    return 0;
}

static int
Walker_clear(Walker *self)
{
    Py_CLEAR(self->scan);
    Py_CLEAR(self->hs_scan);
    Py_CLEAR(self->hs_handler);
    Py_CLEAR(self->zero);
    Py_CLEAR(self->hs_found);
    Py_CLEAR(self->matched);
    Py_CLEAR(self->entry);
    Py_CLEAR(self->digests);
    Py_CLEAR(self->decompress);
    Py_CLEAR(self->b64decode);
    Py_CLEAR(self->b64url);
    Py_CLEAR(self->b64errors);
    Py_CLEAR(self->hit);
    Py_CLEAR(self->messages);
    for (int i = 0; i < L_COUNT; i++)
        Py_CLEAR(self->names[i]);
    Py_CLEAR(self->data_name);
    return 0;
}

static void
Walker_dealloc(Walker *self)
{
    PyObject_GC_UnTrack(self);
    Walker_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Walker_methods[] = {
    {"walk", (PyCFunction)Walker_walk, METH_O,
     "walk(data) -> (hits, warnings): what Detector._scan gives for one part's bytes."},
    {"scan_parts", (PyCFunction)(void (*)(void))Walker_scan_parts, METH_FASTCALL,
     "scan_parts(parts, recent, max_size, max_entries) -> [(index, hits, warnings)]: Detector.scan_parts."},
    {"views", (PyCFunction)Walker_views, METH_O,
     "views(data) -> [(chain, view)]: the views the walk went through below the top, as decoders.peel "
     "yields them (to check the two walks against each other)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "phonehome._detect.Walker",
    .tp_basicsize = sizeof(Walker),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One profile's walk through a part's views (see phonehome.detect.scan.Detector).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Walker_init,
    .tp_traverse = (traverseproc)Walker_traverse,
    .tp_clear = (inquiry)Walker_clear,
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_methods = Walker_methods,
};

static PyMethodDef module_methods[] = {
    {"collect", (PyCFunction)(void (*)(void))collect, METH_FASTCALL,
     "collect(id, from, to, flags, context): a Hyperscan match handler that appends (id, to) to context."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "phonehome._detect",
    .m_doc = "The detector's walk through one part's views, in C (optional; see scan.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__detect(void)
{
    init_classes();
    if (PyType_Ready(&WalkerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    collect_module = m; /* borrowed: the module outlives its walkers */
    if (PyModule_AddObjectRef(m, "Walker", (PyObject *)&WalkerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
