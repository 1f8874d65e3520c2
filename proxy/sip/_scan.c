/*
 * proxy/sip/_scan.c: the common path of proxy/sip/message.py in C.
 *
 * How this works: two functions, each a copy of the common path of a Python
 * function in message.py, that *decline* (return None) the moment the input
 * leaves that common path. The caller then runs the Python code, which is
 * the reference: it validates, answers errors and handles every rare shape.
 * So C only ever answers for input the Python code would treat the same way
 * (tests/unit/test_sip_cscan.py compares both on the RFC 4475 set, real
 * calls, mutations and random bytes), and it never raises for bad input.
 *
 * scan_headers(buf, pos, hend, fast) is message._scan_headers: the header
 * block buf[pos:hend] is cut into lines at each CRLF (RFC 3261 section
 * 7.3.1); the name of each line (the octets before its first colon) is
 * looked up in `fast`, the dict of remembered wire spellings; for every line
 * whose spelling maps to a non-empty canonical name, (value start, line end)
 * is appended to result[canonical]. A line with no colon, an empty name or a
 * spelling `fast` does not hold declines (the Python scan validates the name,
 * detects folding and remembers new spellings).
 *
 * parse(data) is message._parse for the shapes real traffic has: a request
 * line "METHOD SP sip-URI SP SIP/2.0" or a status line, remembered header
 * spellings, one Via value per line in the form "SIP/2.0/UDP host[:port];
 * params", From/To as [display] <URI>[;tag=x], digits where digits belong.
 * It builds the same Request/Response, Via and NameAddr objects the Python
 * code builds, filling their __slots__ directly (init() is given the classes
 * and checks each slot is a plain object member). Anything else declines.
 *
 * Every read stays inside the bytes objects it was given.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* character classes (RFC 3261 section 25.1)                          */

static unsigned char is_token[256];  /* alphanum / "-.!%*_+`'~" */
static unsigned char is_host[256];   /* [-A-Za-z0-9.]: a name or IPv4 */
static unsigned char is_scheme[256]; /* ALPHA / DIGIT / "+-." */
static unsigned char uri_bad[256];   /* CTL, SP, DEL, '<', '>', '"' */
static unsigned char is_space[256];  /* what bytes.strip()/split() remove */
static unsigned char dn_token[256];  /* token / SP / HTAB (display name) */
static unsigned char na_uri_bad[256]; /* '<', '>', '"', SP, HTAB */

static void
init_classes(void)
{
    const char *alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (const char *p = alnum; *p; p++) {
        is_token[(unsigned char)*p] = 1;
        is_host[(unsigned char)*p] = 1;
        is_scheme[(unsigned char)*p] = 1;
    }
    for (const char *p = "-.!%*_+`'~"; *p; p++)
        is_token[(unsigned char)*p] = 1;
    is_host['-'] = is_host['.'] = 1;
    is_scheme['+'] = is_scheme['-'] = is_scheme['.'] = 1;
    for (int c = 0; c <= 32; c++)
        uri_bad[c] = 1;
    uri_bad[0x7f] = uri_bad['<'] = uri_bad['>'] = uri_bad['"'] = 1;
    for (const char *p = " \t\n\r\x0b\x0c"; *p; p++)
        is_space[(unsigned char)*p] = 1;
    memcpy(dn_token, is_token, sizeof dn_token);
    dn_token[' '] = dn_token['\t'] = 1;
    for (const char *p = "<>\" \t"; *p; p++)
        na_uri_bad[(unsigned char)*p] = 1;
}

/* ------------------------------------------------------------------ */
/* the header scan                                                    */

/* (a, b), stealing both references; NULL (error set) when either is NULL */
static inline PyObject *
pair(PyObject *a, PyObject *b)
{
    PyObject *t = (a != NULL && b != NULL) ? PyTuple_New(2) : NULL;
    if (t == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, a);
    PyTuple_SET_ITEM(t, 1, b);
    return t;
}

static inline PyObject *
span_tuple(Py_ssize_t s, Py_ssize_t e)
{
    return pair(PyLong_FromSsize_t(s), PyLong_FromSsize_t(e));
}

/* The canonical name of a header spelling: `fast` (message._FAST) answers,
 * and the answers for message._FAST itself are kept in a small fixed-size
 * table, so that a known spelling costs a hash of its octets and one compare
 * instead of a bytes object and a dict lookup. Safe because an answer never
 * goes stale: a spelling's canonical name never changes; message._FAST may
 * forget learned spellings (message._forget_learned: an answer kept here is
 * still right), and when it changes one (message.index_header) it calls
 * init(), which empties the table.
 *
 * The table is bounded (NAME_SLOTS entries, NAME_PROBES places a name may
 * stand in), and traffic with made-up names cannot crowd the real ones out:
 * init() pins the spellings `fast` holds then (the common names message.py
 * seeds it with, in its insertion order, up to NAME_PINNED), which are never
 * evicted; a later name takes a free place in its probe window, else evicts
 * an unpinned one there (round robin), else (all pinned) is not cached. */
#define NAME_SLOTS 1024 /* a power of two */
#define NAME_MAX_LEN 32
#define NAME_PROBES 8
#define NAME_PINNED (NAME_SLOTS / 2)
struct name_slot {
    Py_ssize_t len; /* 0 = free */
    int pinned;
    char name[NAME_MAX_LEN];
    PyObject *canon; /* strong reference */
};
static struct name_slot name_table[NAME_SLOTS];
static PyObject *fast_names; /* message._FAST, the dict name_table mirrors */
static unsigned name_clock;  /* the round robin of evictions */

static inline size_t
name_hash(const char *p, Py_ssize_t n)
{
    size_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static inline struct name_slot *
name_slot_at(size_t h, int k)
{
    return &name_table[(h + (size_t)k) & (NAME_SLOTS - 1)];
}

/* Keep p[:n] -> canon (n < NAME_MAX_LEN, the spelling not in the table):
 * a free place of its window, else an unpinned one (evicted), else none. */
static void
name_keep(size_t h, const char *p, Py_ssize_t n, PyObject *canon, int pinned)
{
    struct name_slot *sl = NULL;
    for (int k = 0; k < NAME_PROBES && sl == NULL; k++)
        if (name_slot_at(h, k)->len == 0)
            sl = name_slot_at(h, k);
    if (sl == NULL && !pinned) {
        int first = (int)(name_clock++ % NAME_PROBES);
        for (int k = 0; k < NAME_PROBES && sl == NULL; k++)
            if (!name_slot_at(h, (first + k) % NAME_PROBES)->pinned)
                sl = name_slot_at(h, (first + k) % NAME_PROBES);
    }
    if (sl == NULL)
        return;
    sl->len = n;
    sl->pinned = pinned;
    memcpy(sl->name, p, (size_t)n);
    Py_XSETREF(sl->canon, Py_NewRef(canon)); /* the evicted answer: bytes, no side effect */
}

/* the slot holding p[:n], or NULL; a free place ends the search (a place
 * is only ever freed with the whole table, and a name takes the first free
 * place of its window, so it is never behind one) */
static struct name_slot *
name_find(size_t h, const char *p, Py_ssize_t n)
{
    for (int k = 0; k < NAME_PROBES; k++) {
        struct name_slot *sl = name_slot_at(h, k);
        if (sl->len == 0)
            return NULL;
        if (sl->len == n && memcmp(sl->name, p, (size_t)n) == 0)
            return sl;
    }
    return NULL;
}

/* borrowed canonical name, or NULL (error set, or none: the spelling is unknown) */
static PyObject *
canonical(PyObject *fast, const char *p, Py_ssize_t n)
{
    int cached = fast == fast_names && n > 0 && n < NAME_MAX_LEN;
    size_t h = 0;
    if (cached) {
        h = name_hash(p, n);
        struct name_slot *sl = name_find(h, p, n);
        if (sl != NULL)
            return sl->canon;
    }
    PyObject *spelling = PyBytes_FromStringAndSize(p, n);
    if (spelling == NULL)
        return NULL;
    PyObject *canon = PyDict_GetItemWithError(fast, spelling); /* borrowed */
    Py_DECREF(spelling);
    if (canon == NULL || !PyBytes_Check(canon))
        return NULL;
    if (cached)
        name_keep(h, p, n, canon, 0);
    return canon;
}

static void
clear_names(void)
{
    for (int k = 0; k < NAME_SLOTS; k++) {
        name_table[k].len = 0;
        name_table[k].pinned = 0;
        Py_CLEAR(name_table[k].canon);
    }
}

/* pin the first NAME_PINNED spellings of `fast` (its insertion order: the
 * common names message.py seeds it with come first) */
static void
pin_names(PyObject *fast)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    int pinned = 0;
    while (pinned < NAME_PINNED && PyDict_Next(fast, &pos, &key, &value)) {
        if (!PyBytes_Check(key) || !PyBytes_Check(value))
            continue;
        Py_ssize_t n = PyBytes_GET_SIZE(key);
        const char *p = PyBytes_AS_STRING(key);
        if (n == 0 || n >= NAME_MAX_LEN)
            continue;
        size_t h = name_hash(p, n);
        if (name_find(h, p, n) == NULL) {
            name_keep(h, p, n, value, 1);
            pinned++;
        }
    }
}

/* _name_cache([spelling]) -> (slots, used, pinned) | bool: the table's size
 * and fill, or whether it holds `spelling` (for tests) */
static PyObject *
name_cache_py(PyObject *self, PyObject *args)
{
    PyObject *spelling = NULL;
    if (!PyArg_ParseTuple(args, "|S", &spelling))
        return NULL;
    if (spelling != NULL) {
        Py_ssize_t n = PyBytes_GET_SIZE(spelling);
        const char *p = PyBytes_AS_STRING(spelling);
        int held = n > 0 && n < NAME_MAX_LEN && name_find(name_hash(p, n), p, n) != NULL;
        return PyBool_FromLong(held);
    }
    Py_ssize_t used = 0, pinned = 0;
    for (int k = 0; k < NAME_SLOTS; k++) {
        used += name_table[k].len != 0;
        pinned += name_table[k].pinned != 0;
    }
    return Py_BuildValue("(inn)", NAME_SLOTS, used, pinned);
}

/* ------------------------------------------------------------------ */
/* line ends                                                          */

/* the first CRLF in s[from:n] (its CR's offset), or -1 */
static inline Py_ssize_t
find_crlf(const char *s, Py_ssize_t from, Py_ssize_t n)
{
    while (from + 1 < n) {
        const char *p = memchr(s + from, '\r', (size_t)(n - 1 - from));
        if (p == NULL)
            return -1;
        Py_ssize_t i = p - s;
        if (s[i + 1] == '\n')
            return i;
        from = i + 1;
    }
    return -1;
}

/* a CR or LF in b[0:end] that is not one half of a CRLF: RFC 3261 section 25.1
 * allows them nowhere else (not even in a quoted-pair), and a reader that ends
 * lines at a bare LF would find a header line the screen read as part of
 * another (message._stray_line_end) */
static int
stray_line_end(const char *b, Py_ssize_t end)
{
    const char *p = b, *stop = b + end;
    while (p < stop && (p = memchr(p, '\n', (size_t)(stop - p))) != NULL) {
        if (p == b || p[-1] != '\r')
            return 1;
        p++;
    }
    p = b;
    while (p < stop && (p = memchr(p, '\r', (size_t)(stop - p))) != NULL) {
        if (p + 1 >= stop || p[1] != '\n')
            return 1;
        p++;
    }
    return 0;
}

/* the blank line ending the header block: the first CRLF CRLF at or after the
 * CRLF at `crlf` (bytes.find(b"\r\n\r\n", crlf)), or -1 */
static Py_ssize_t
blank_line(const char *b, Py_ssize_t crlf, Py_ssize_t n)
{
    while (crlf >= 0 && !(crlf + 3 < n && b[crlf + 2] == '\r' && b[crlf + 3] == '\n'))
        crlf = find_crlf(b, crlf + 2, n);
    return crlf;
}

/* The header line at buf[start:]: its end (the next CRLF before hend, else
 * hend), where its value starts, and the canonical name of its spelling
 * (borrowed; empty: a header the parser does not index). 0, or -1 = decline
 * (no colon, empty name, a spelling `fast` does not hold), -2 = error. */
static int
header_line(const char *buf, Py_ssize_t start, Py_ssize_t hend, PyObject *fast,
            Py_ssize_t *end, Py_ssize_t *value, PyObject **canon)
{
    Py_ssize_t e = find_crlf(buf, start, hend);
    *end = e < 0 ? hend : e;
    const char *colon = memchr(buf + start, ':', (size_t)(*end - start));
    if (colon == NULL || colon == buf + start)
        return -1;
    *value = colon - buf + 1;
    *canon = canonical(fast, buf + start, colon - (buf + start));
    if (*canon == NULL)
        return PyErr_Occurred() ? -2 : -1;
    return 0;
}

/* Index buf[pos:hend]; NULL with no error set = decline. */
static PyObject *
scan_block(const char *buf, Py_ssize_t pos, Py_ssize_t hend, PyObject *fast)
{
    PyObject *result = PyDict_New();
    if (result == NULL)
        return NULL;
    Py_ssize_t start = pos, end;
    do { /* one header line per round, the last one ending at hend */
        Py_ssize_t vstart;
        PyObject *canon;
        int rc = header_line(buf, start, hend, fast, &end, &vstart, &canon);
        if (rc == -2)
            goto error;
        if (rc < 0)
            goto decline;
        if (PyBytes_GET_SIZE(canon) > 0) {
            PyObject *span = span_tuple(vstart, end);
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
        start = end + 2;
    } while (end < hend);
    return result;

decline: /* no error set: the caller declines */
error:
    Py_DECREF(result);
    return NULL;
}

static PyObject *
scan_headers(PyObject *self, PyObject *args)
{
    PyObject *buf_obj, *fast;
    Py_ssize_t pos, hend;
    if (!PyArg_ParseTuple(args, "SnnO!", &buf_obj, &pos, &hend, &PyDict_Type, &fast))
        return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(buf_obj);
    if (pos < 0 || hend > n || pos > hend)
        Py_RETURN_NONE;
    PyObject *result = scan_block(PyBytes_AS_STRING(buf_obj), pos, hend, fast);
    if (result == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return result;
}

/* ------------------------------------------------------------------ */
/* the classes parse() builds, and their slots                       */

enum {
    M_RAW, M_VIAS, M_CALL_ID, M_CSEQ, M_MAX_FORWARDS, M_CONTENT_LENGTH, M_BODY,
    M_HEADERS_END, M_BUF, M_HDRS, M_ALL, M_HSTART, M_CACHE,
    M_NSHARED
};
static const char *const shared_slots[M_NSHARED] = {
    "raw", "vias", "call_id", "cseq", "max_forwards", "content_length", "body",
    "headers_end", "header_block", "indexed", "_all", "headers_start", "_cache",
};
enum { Q_METHOD, Q_RURI, Q_VERSION, Q_FROM, Q_TO, Q_N };
static const char *const req_slots[Q_N] = {"method", "ruri", "version", "from_", "to"};
enum { R_STATUS, R_REASON, R_FROM, R_TO, R_FROM_SPAN, R_TO_SPAN, R_N };
static const char *const resp_slots[R_N] = {
    "status", "reason", "_from", "_to", "_from_span", "_to_span",
};
enum {
    V_TRANSPORT, V_HOST, V_PORT, V_BRANCH, V_RECEIVED, V_RPORT, V_PARAMS, V_SPAN,
    V_LINE, V_SENT_BY, V_N
};
static const char *const via_slots[V_N] = {
    "transport", "host", "port", "branch", "received", "rport", "params", "span",
    "line", "sent_by",
};
enum { N_DISPLAY, N_URI, N_PARAMS, N_TAG, N_RAW, N_SU, N_N };
static const char *const na_slots[N_N] = {"display", "uri", "params", "tag", "raw", "_su"};

static PyTypeObject *request_type, *response_type, *via_type, *name_addr_type;
static Py_ssize_t off_req[M_NSHARED + Q_N], off_resp[M_NSHARED + R_N];
static Py_ssize_t off_via[V_N], off_na[N_N];
static long long cseq_max, mf_max, cl_max;
static PyObject *k_via, *k_from, *k_to, *k_call_id, *k_cseq, *k_max_forwards,
    *k_content_length, *k_date, *k_contact, *k_branch, *k_received, *k_rport, *k_tag,
    *k_version, *k_route, *k_proxy_require;
static PyObject *transports[6]; /* UDP TCP TLS SCTP WS WSS */
static const char *const transport_names[6] = {"UDP", "TCP", "TLS", "SCTP", "WS", "WSS"};
static int ready;

/* The offset of slot `name` of `type`; -1 with an error set if it is not a plain slot. */
static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)type, name);
    if (d == NULL)
        return -1;
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type) &&
        PyType_IsSubtype(type, ((PyMemberDescrObject *)d)->d_common.d_type)) {
        /* a member of this type or a base: its offset lies inside every instance */
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY) && m->offset > 0 &&
            m->offset + (Py_ssize_t)sizeof(PyObject *) <= type->tp_basicsize)
            off = m->offset;
    }
    Py_DECREF(d);
    if (off < 0)
        PyErr_Format(PyExc_TypeError, "%s.%s is not a plain __slots__ member", type->tp_name,
                     name);
    return off;
}

static int
slot_offsets(PyTypeObject *type, const char *const *names, int n, Py_ssize_t *out)
{
    for (int i = 0; i < n; i++) {
        out[i] = slot_offset(type, names[i]);
        if (out[i] < 0)
            return -1;
    }
    return 0;
}

/* Store `value` (a new reference, stolen; NULL = error already set) in a slot. */
static inline int
put(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    if (value == NULL)
        return -1;
    PyObject **p = (PyObject **)((char *)obj + off);
    PyObject *old = *p;
    *p = value;
    Py_XDECREF(old);
    return 0;
}

static inline int
put_borrowed(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    Py_INCREF(value);
    return put(obj, off, value);
}

static PyObject *
new_instance(PyTypeObject *type)
{
    return type->tp_alloc(type, 0);
}

static PyObject *
init(PyObject *self, PyObject *args)
{
    /* Everything is read and checked into locals first; the module's state is
     * swapped only when all of it holds, so a failed call leaves the previous
     * set-up working, and a second call releases what the first one held. */
    PyObject *req, *resp, *via, *na, *fast;
    long long cmax, mmax, lmax;
    Py_ssize_t oreq[M_NSHARED + Q_N], oresp[M_NSHARED + R_N], ovia[V_N], ona[N_N];
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!LLL", &PyType_Type, &req, &PyType_Type, &resp,
                          &PyType_Type, &via, &PyType_Type, &na, &PyDict_Type, &fast, &cmax,
                          &mmax, &lmax))
        return NULL;
    if (cmax < 0 || mmax < 0 || lmax < 0) {
        PyErr_SetString(PyExc_ValueError, "init: the limits must not be negative");
        return NULL;
    }
    if (slot_offsets((PyTypeObject *)req, shared_slots, M_NSHARED, oreq) < 0 ||
        slot_offsets((PyTypeObject *)req, req_slots, Q_N, oreq + M_NSHARED) < 0 ||
        slot_offsets((PyTypeObject *)resp, shared_slots, M_NSHARED, oresp) < 0 ||
        slot_offsets((PyTypeObject *)resp, resp_slots, R_N, oresp + M_NSHARED) < 0 ||
        slot_offsets((PyTypeObject *)via, via_slots, V_N, ovia) < 0 ||
        slot_offsets((PyTypeObject *)na, na_slots, N_N, ona) < 0)
        return NULL;
    ready = 0;
    memcpy(off_req, oreq, sizeof off_req);
    memcpy(off_resp, oresp, sizeof off_resp);
    memcpy(off_via, ovia, sizeof off_via);
    memcpy(off_na, ona, sizeof off_na);
    cseq_max = cmax;
    mf_max = mmax;
    cl_max = lmax;
    clear_names(); /* its answers came from the old dict */
    /* new references first, the old ones released last (Py_XSETREF) */
    Py_XSETREF(request_type, (PyTypeObject *)Py_NewRef(req));
    Py_XSETREF(response_type, (PyTypeObject *)Py_NewRef(resp));
    Py_XSETREF(via_type, (PyTypeObject *)Py_NewRef(via));
    Py_XSETREF(name_addr_type, (PyTypeObject *)Py_NewRef(na));
    Py_XSETREF(fast_names, Py_NewRef(fast));
    pin_names(fast);
    ready = 1;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ */
/* small readers                                                      */

/* bytes.strip(): [*s, *e) without leading/trailing ASCII whitespace */
static inline void
strip(const char *b, Py_ssize_t *s, Py_ssize_t *e)
{
    while (*s < *e && is_space[(unsigned char)b[*s]])
        (*s)++;
    while (*e > *s && is_space[(unsigned char)b[*e - 1]])
        (*e)--;
}

/* message._digits: 1..12 ASCII digits, at most `limit`; -1 = decline */
static inline long long
digits(const char *b, Py_ssize_t s, Py_ssize_t e, long long limit)
{
    if (e <= s || e - s > 12)
        return -1;
    long long v = 0;
    for (Py_ssize_t i = s; i < e; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    return v > limit ? -1 : v;
}

/* A (start, end) span made by span_tuple, read back: 0, or -1 (error set when
 * the objects are not what scan_block stores, or the span is not inside [0, n]). */
static int
span_at(PyObject *t, Py_ssize_t n, Py_ssize_t *s, Py_ssize_t *e)
{
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2) {
        PyErr_SetString(PyExc_SystemError, "_scan: a header span is not a pair");
        return -1;
    }
    *s = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 0));
    if (*s == -1 && PyErr_Occurred())
        return -1;
    *e = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 1));
    if (*e == -1 && PyErr_Occurred())
        return -1;
    if (*s < 0 || *e < *s || *e > n) {
        PyErr_SetString(PyExc_SystemError, "_scan: a header span lies outside its buffer");
        return -1;
    }
    return 0;
}

/* hdrs[key], borrowed: a list, or NULL (absent: no error set; error: set) */
static PyObject *
spans_of(PyObject *hdrs, PyObject *key)
{
    PyObject *lst = PyDict_GetItemWithError(hdrs, key);
    if (lst != NULL && !PyList_Check(lst)) {
        PyErr_SetString(PyExc_SystemError, "_scan: a header index entry is not a list");
        return NULL;
    }
    return lst;
}

/* the one span of a header given exactly once in b[0:n]; 1, 0 = absent,
 * -1 = twice or more (or absent and required), -2 = error set */
static int
one_span(PyObject *hdrs, PyObject *key, Py_ssize_t n, Py_ssize_t *s, Py_ssize_t *e,
         int required)
{
    PyObject *lst = spans_of(hdrs, key); /* borrowed */
    if (lst == NULL) {
        if (PyErr_Occurred())
            return -2;
        return required ? -1 : 0;
    }
    if (PyList_GET_SIZE(lst) != 1)
        return -1;
    if (span_at(PyList_GET_ITEM(lst, 0), n, s, e) < 0)
        return -2;
    return 1;
}

/* ------------------------------------------------------------------ */
/* Via (message._parse_via, the _VIA_RE branch)                        */

/* message._params(text) for text = b[s:e], non-empty; NULL + no error = decline */
static PyObject *
params_dict(const char *b, Py_ssize_t s, Py_ssize_t e)
{
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    Py_ssize_t ps = s;
    const char *semi;
    do { /* one parameter per round, up to the next ';' or e */
        semi = memchr(b + ps, ';', (size_t)(e - ps));
        Py_ssize_t pe = semi ? semi - b : e;
        const char *eq = memchr(b + ps, '=', (size_t)(pe - ps));
        Py_ssize_t ns = ps, ne = eq ? eq - b : pe;
        strip(b, &ns, &ne);
        if (ne <= ns)
            goto decline; /* empty parameter (name): the Python code answers */
        PyObject *name = PyBytes_FromStringAndSize(NULL, ne - ns);
        if (name == NULL)
            goto error;
        char *np = PyBytes_AS_STRING(name);
        for (Py_ssize_t i = ns; i < ne; i++) {
            unsigned char c = (unsigned char)b[i];
            np[i - ns] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
        PyObject *value;
        if (eq) {
            Py_ssize_t vs = eq - b + 1, ve = pe;
            strip(b, &vs, &ve);
            value = PyBytes_FromStringAndSize(b + vs, ve - vs);
            if (value == NULL) {
                Py_DECREF(name);
                goto error;
            }
        } else {
            value = Py_NewRef(Py_None);
        }
        int rc = PyDict_SetItem(out, name, value);
        Py_DECREF(name);
        Py_DECREF(value);
        if (rc < 0)
            goto error;
        ps = pe + 1;
    } while (semi != NULL);
    return out;
decline:
error:
    Py_DECREF(out);
    return NULL;
}

/* The part of one Via value before its parameters (message._VIA_RE): b[*s:*e]
 * trimmed in place, the transport, host [hs, he), port (-1: none) and the end
 * of sent-by; the parameters, if any, follow at sbe + 1. -1 = decline. */
struct via_at {
    int t;
    Py_ssize_t hs, he, sbe;
    long long port;
};

static int
via_head(const char *b, Py_ssize_t *sp, Py_ssize_t *ep, struct via_at *v)
{
    Py_ssize_t s = *sp, e = *ep;
    while (s < e && (b[s] == ' ' || b[s] == '\t'))
        s++;
    while (e > s && (b[e - 1] == ' ' || b[e - 1] == '\t'))
        e--;
    *sp = s;
    *ep = e;
    if (e - s < 12 || memcmp(b + s, "SIP/2.0/", 8) != 0)
        return -1;
    Py_ssize_t i = s + 8;
    int t = -1;
    for (int k = 0; k < 6; k++) {
        size_t l = strlen(transport_names[k]);
        if (i + (Py_ssize_t)l < e && memcmp(b + i, transport_names[k], l) == 0 &&
            b[i + l] == ' ') {
            t = k;
            i += (Py_ssize_t)l + 1;
            break;
        }
    }
    if (t < 0)
        return -1;
    Py_ssize_t hs = i;
    while (i < e && is_host[(unsigned char)b[i]])
        i++;
    Py_ssize_t he = i;
    if (he == hs)
        return -1;
    long long port = -1;
    if (i < e && b[i] == ':') {
        Py_ssize_t ds = ++i;
        while (i < e && b[i] >= '0' && b[i] <= '9')
            i++;
        if (i == ds || i - ds > 5)
            return -1;
        port = digits(b, ds, i, 65535);
        if (port <= 0)
            return -1;
    }
    if (i != e && !(b[i] == ';' && i + 1 < e))
        return -1;
    v->t = t;
    v->hs = hs;
    v->he = he;
    v->sbe = i;
    v->port = port;
    return 0;
}

/* One Via header line's value b[s:e] (untrimmed), the line [ls, e + 2). */
static PyObject *
via_value(const char *b, Py_ssize_t s, Py_ssize_t e, Py_ssize_t ls)
{
    Py_ssize_t line_end = e + 2; /* the line's own CRLF included */
    struct via_at v;
    if (via_head(b, &s, &e, &v) < 0)
        return NULL;
    Py_ssize_t i = v.sbe, hs = v.hs, he = v.he, sbe = v.sbe;
    int t = v.t;
    long long port = v.port;
    PyObject *params = i == e ? PyDict_New() : params_dict(b, i + 1, e);
    if (params == NULL)
        return NULL;
    PyObject *via = new_instance(via_type);
    if (via == NULL) {
        Py_DECREF(params);
        return NULL;
    }
    /* params first: from here on `via` owns it, and every exit below releases `via` */
    (void)put(via, off_via[V_PARAMS], params);
    PyObject *rport, *branch, *received; /* borrowed from params */
    if (((rport = PyDict_GetItemWithError(params, k_rport)) == NULL && PyErr_Occurred()) ||
        ((branch = PyDict_GetItemWithError(params, k_branch)) == NULL && PyErr_Occurred()) ||
        ((received = PyDict_GetItemWithError(params, k_received)) == NULL &&
         PyErr_Occurred())) {
        Py_DECREF(via);
        return NULL;
    }
    if (rport == Py_None)
        rport = PyBytes_FromStringAndSize("", 0); /* NULL: put() fails, via released */
    else if (rport != NULL)
        Py_INCREF(rport);
    else
        rport = Py_NewRef(Py_None);
    if (put(via, off_via[V_RPORT], rport) < 0 ||
        put_borrowed(via, off_via[V_TRANSPORT], transports[t]) < 0 ||
        put(via, off_via[V_HOST], PyBytes_FromStringAndSize(b + hs, he - hs)) < 0 ||
        put(via, off_via[V_PORT], port < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(port)) <
            0 ||
        put(via, off_via[V_SENT_BY], PyBytes_FromStringAndSize(b + hs, sbe - hs)) < 0 ||
        put_borrowed(via, off_via[V_BRANCH], branch ? branch : Py_None) < 0 ||
        put_borrowed(via, off_via[V_RECEIVED], received ? received : Py_None) < 0 ||
        put(via, off_via[V_SPAN], span_tuple(s, e)) < 0 ||
        put(via, off_via[V_LINE], span_tuple(ls, line_end)) < 0) {
        Py_DECREF(via);
        return NULL;
    }
    return via;
}

/* the via-parm line values of a message: a list of Via, NULL = decline or error */
static PyObject *
vias_of(const char *b, Py_ssize_t size, PyObject *spans)
{
    Py_ssize_t n = PyList_GET_SIZE(spans);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t s, e;
        if (span_at(PyList_GET_ITEM(spans, k), size, &s, &e) < 0)
            goto fail;
        if (memchr(b + s, ',', (size_t)(e - s)) != NULL)
            goto fail; /* several values on one line: the Python code splits them */
        /* the line starts after the CRLF before the value (message._parse: rfind) */
        Py_ssize_t ls = s;
        while (ls >= 2 && !(b[ls - 2] == '\r' && b[ls - 1] == '\n'))
            ls--;
        if (ls < 2)
            goto fail;
        PyObject *v = via_value(b, s, e, ls);
        if (v == NULL)
            goto fail;
        PyList_SET_ITEM(out, k, v);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* parse_via(buf, s, e, line_start): message._parse_via(buf, s, e, (line_start,
 * e + 2)) for one value in the common shape, else None (declined) */
static PyObject *
parse_via(PyObject *self, PyObject *args)
{
    PyObject *buf_obj;
    Py_ssize_t s, e, ls;
    if (!PyArg_ParseTuple(args, "Snnn", &buf_obj, &s, &e, &ls))
        return NULL;
    if (!ready || s < 0 || e < s || e > PyBytes_GET_SIZE(buf_obj) || ls < 0 || ls > s)
        Py_RETURN_NONE;
    PyObject *via = via_value(PyBytes_AS_STRING(buf_obj), s, e, ls);
    if (via == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return via;
}

/* ------------------------------------------------------------------ */
/* the lean relay of a response (relay.scan_response)                 */

/* relay._length_ok: Content-Length, when spelled so, equals the body; a body needs it */
static int
length_ok(const char *b, Py_ssize_t n, Py_ssize_t eol, Py_ssize_t hend)
{
    static const char key[] = "\r\nContent-Length:";
    const Py_ssize_t kl = (Py_ssize_t)sizeof key - 1;
    Py_ssize_t i = eol, limit = hend + 2; /* the key must lie inside [eol, hend + 2) */
    for (;;) {
        i = find_crlf(b, i, limit);
        if (i < 0 || i + kl > limit)
            return n == hend + 4;
        if (memcmp(b + i, key, (size_t)kl) == 0)
            break;
        i += 1;
    }
    Py_ssize_t s = i + kl, e = find_crlf(b, s, n);
    if (e < 0)
        e = n;
    strip(b, &s, &e);
    if (e - s > 5)
        return 0;
    long long v = digits(b, s, e, 99999);
    return v >= 0 && v == n - hend - 4;
}

/* scan_response(data, our_via): relay.scan_response in C (same answer, or None) */
static PyObject *
scan_response(PyObject *self, PyObject *args)
{
    PyObject *data, *our;
    if (!PyArg_ParseTuple(args, "SS", &data, &our))
        return NULL;
    if (!ready)
        Py_RETURN_NONE;
    const char *b = PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (n < 12 || memcmp(b, "SIP/2.0 ", 8) != 0 || b[11] != ' ')
        Py_RETURN_NONE;
    long long status = digits(b, 8, 11, 699);
    if (status < 100)
        Py_RETURN_NONE;
    Py_ssize_t eol = find_crlf(b, 0, n);
    if (eol < 0)
        Py_RETURN_NONE;
    Py_ssize_t p = eol + 2, ol = PyBytes_GET_SIZE(our);
    if (p + ol > n || memcmp(b + p, PyBytes_AS_STRING(our), (size_t)ol) != 0)
        Py_RETURN_NONE;
    Py_ssize_t q = p + ol + 16;
    if (q + 2 > n)
        Py_RETURN_NONE;
    for (Py_ssize_t i = q - 16; i < q; i++) {
        char c = b[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            Py_RETURN_NONE; /* not the 16 hex digits of our branch (core._branch) */
    }
    Py_ssize_t v0, c0, c1, line0;
    if (b[q] == ',' && b[q + 1] == ' ') {
        v0 = q + 2;
        c0 = p + 5; /* our value and the comma; "Via: " stays for the next one */
        c1 = v0;
        line0 = p;
    } else if (b[q] == '\r' && b[q + 1] == '\n' && q + 7 <= n && memcmp(b + q + 2, "Via: ", 5) == 0) {
        v0 = q + 7; /* the next Via on its own line, right after ours */
        c0 = p;
        c1 = q + 2;
        line0 = q + 2;
    } else {
        Py_RETURN_NONE;
    }
    Py_ssize_t ve = find_crlf(b, v0, n);
    if (ve < 0)
        Py_RETURN_NONE;
    Py_ssize_t hend = blank_line(b, ve, n);
    if (hend < 0 || !length_ok(b, n, eol, hend) || memchr(b, '\0', (size_t)hend) != NULL ||
        stray_line_end(b, hend + 4))
        Py_RETURN_NONE; /* a raw NUL, a bare CR or LF: the full parse decides */
    /* relay._via_at: one value on the line, not folded onto the next */
    if (memchr(b + v0, ',', (size_t)(ve - v0)) != NULL ||
        (ve + 2 < n && (b[ve + 2] == ' ' || b[ve + 2] == '\t')))
        Py_RETURN_NONE;
    PyObject *via = via_value(b, v0, ve, line0);
    if (via == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(LN(nn))", status, via, c0, c1);
}

/* ------------------------------------------------------------------ */
/* From/To (message.parse_name_addr, the _NAME_ADDR_RE branch)         */

/* [display] <URI>[;tag=x] in b[s:e]: the spans, -1 = decline; ts = -1: no tag */
struct na_at {
    Py_ssize_t s, e, ds, de, us, ue, ts, te;
};

static int
na_spans(const char *b, Py_ssize_t s, Py_ssize_t e, struct na_at *a)
{
    strip(b, &s, &e);
    Py_ssize_t i = s, ds, de, us, ue, ts = -1, te = -1;
    if (i < e && b[i] == '"') {
        ds = i++;
        while (i < e && b[i] != '"' && b[i] != '\\')
            i++;
        if (i >= e || b[i] != '"')
            return -1;
        de = ++i;
        while (i < e && (b[i] == ' ' || b[i] == '\t'))
            i++;
    } else {
        while (i < e && dn_token[(unsigned char)b[i]])
            i++;
        ds = s;
        de = i;
        strip(b, &ds, &de);
    }
    if (i >= e || b[i] != '<')
        return -1;
    us = ++i;
    int colon = 0;
    while (i < e && !na_uri_bad[(unsigned char)b[i]]) {
        colon |= b[i] == ':';
        i++;
    }
    if (i >= e || b[i] != '>' || !colon)
        return -1;
    ue = i++;
    if (i < e) {
        if (e - i < 5 || memcmp(b + i, ";tag=", 5) != 0)
            return -1;
        ts = i + 5;
        i = ts;
        while (i < e && is_token[(unsigned char)b[i]])
            i++;
        if (i != e)
            return -1;
        te = e;
    }
    *a = (struct na_at){s, e, ds, de, us, ue, ts, te};
    return 0;
}

static PyObject *
name_addr(const char *b, Py_ssize_t s0, Py_ssize_t e0)
{
    struct na_at a;
    if (na_spans(b, s0, e0, &a) < 0)
        return NULL;
    Py_ssize_t s = a.s, e = a.e, ds = a.ds, de = a.de, us = a.us, ue = a.ue, ts = a.ts,
               te = a.te;
    PyObject *na = new_instance(name_addr_type);
    if (na == NULL)
        return NULL;
    PyObject *params = PyDict_New(), *tag = Py_None;
    if (params == NULL)
        goto error;
    if (ts >= 0) {
        tag = PyBytes_FromStringAndSize(b + ts, te - ts);
        if (tag == NULL || PyDict_SetItem(params, k_tag, tag) < 0) {
            Py_XDECREF(tag);
            Py_DECREF(params);
            goto error;
        }
    } else {
        Py_INCREF(tag);
    }
    if (put(na, off_na[N_PARAMS], params) < 0 || put(na, off_na[N_TAG], tag) < 0 ||
        put(na, off_na[N_DISPLAY], PyBytes_FromStringAndSize(b + ds, de - ds)) < 0 ||
        put(na, off_na[N_URI], PyBytes_FromStringAndSize(b + us, ue - us)) < 0 ||
        put(na, off_na[N_RAW], PyBytes_FromStringAndSize(b + s, e - s)) < 0 ||
        put_borrowed(na, off_na[N_SU], Py_None) < 0)
        goto error;
    return na;
error:
    Py_DECREF(na);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* parse                                                              */

/* The checks message._parse makes of Call-ID (one word), CSeq (1*DIGIT LWS
 * Method, the method of the request line when `method` is given), Max-Forwards
 * and Content-Length (digits; Content-Length within the `avail` octets after
 * the header block). The spans are stripped in place; -1 = decline. */
struct fields {
    Py_ssize_t cs, ce, qs, qe, qm, ms, me, ls, le;
    int has_mf, has_cl;
    long long cseq, mf, cl;
};

static int
check_fields(const char *b, struct fields *f, const char *method, Py_ssize_t mlen,
             Py_ssize_t avail)
{
    strip(b, &f->cs, &f->ce);
    if (f->ce <= f->cs || memchr(b + f->cs, ' ', (size_t)(f->ce - f->cs)) != NULL)
        return -1;
    strip(b, &f->qs, &f->qe);
    Py_ssize_t q = f->qs, qe = f->qe;
    while (q < qe && !is_space[(unsigned char)b[q]])
        q++;
    Py_ssize_t qm = q;
    while (qm < qe && is_space[(unsigned char)b[qm]])
        qm++;
    if (qm >= qe)
        return -1;
    for (Py_ssize_t i = qm; i < qe; i++)
        if (is_space[(unsigned char)b[i]])
            return -1;
    f->qm = qm;
    f->cseq = digits(b, f->qs, q, cseq_max);
    if (f->cseq < 0)
        return -1;
    if (method != NULL && (mlen != qe - qm || memcmp(method, b + qm, (size_t)mlen) != 0))
        return -1;
    f->mf = f->cl = -1;
    if (f->has_mf) {
        strip(b, &f->ms, &f->me);
        f->mf = digits(b, f->ms, f->me, mf_max);
        if (f->mf < 0)
            return -1;
    }
    if (f->has_cl) {
        strip(b, &f->ls, &f->le);
        f->cl = digits(b, f->ls, f->le, cl_max);
        if (f->cl < 0 || f->cl > avail)
            return -1;
    }
    return 0;
}

/* message._request_line for "METHOD SP URI SP SIP/2.0" with no '?' in the URI:
 * the method is b[0:*m], the URI b[*us:*ue]; -1 = decline */
static int
request_line_at(const char *b, Py_ssize_t eol, Py_ssize_t *mp, Py_ssize_t *usp, Py_ssize_t *uep)
{
    const char *sp1 = memchr(b, ' ', (size_t)eol);
    if (sp1 == NULL || sp1 == b)
        return -1;
    Py_ssize_t m = sp1 - b;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - m - 1));
    if (sp2 == NULL)
        return -1;
    Py_ssize_t us = m + 1, ue = sp2 - b;
    if (eol - ue - 1 != 7 || memcmp(sp2 + 1, "SIP/2.0", 7) != 0)
        return -1;
    for (Py_ssize_t i = 0; i < m; i++)
        if (!is_token[(unsigned char)b[i]] || (b[i] >= 'a' && b[i] <= 'z'))
            return -1; /* a lower-case letter: maybe a standard method in another
                          case (message._request_line answers 400) */
    if (ue <= us || !((b[us] | 0x20) >= 'a' && (b[us] | 0x20) <= 'z'))
        return -1;
    Py_ssize_t i = us;
    while (i < ue && is_scheme[(unsigned char)b[i]])
        i++;
    if (i >= ue || b[i] != ':')
        return -1;
    for (i = us; i < ue; i++) {
        unsigned char c = (unsigned char)b[i];
        if (uri_bad[c] || c == '?')
            return -1;
    }
    *mp = m;
    *usp = us;
    *uep = ue;
    return 0;
}

static int
request_line(const char *b, Py_ssize_t eol, PyObject *msg)
{
    Py_ssize_t m, us, ue;
    if (request_line_at(b, eol, &m, &us, &ue) < 0)
        return -1;
    if (put(msg, off_req[M_NSHARED + Q_METHOD], PyBytes_FromStringAndSize(b, m)) < 0 ||
        put(msg, off_req[M_NSHARED + Q_RURI], PyBytes_FromStringAndSize(b + us, ue - us)) <
            0 ||
        put_borrowed(msg, off_req[M_NSHARED + Q_VERSION], k_version) < 0)
        return -2;
    return 0;
}

/* message._status_line */
static int
status_line(const char *b, Py_ssize_t eol, PyObject *msg)
{
    if (eol < 11 || memcmp(b, "SIP/2.0 ", 8) != 0)
        return -1;
    long long code = digits(b, 8, 11, 699);
    if (code < 100 || (eol > 11 && b[11] != ' '))
        return -1;
    Py_ssize_t rs = eol > 12 ? 12 : eol;
    if (put(msg, off_resp[M_NSHARED + R_STATUS], PyLong_FromLongLong(code)) < 0 ||
        put(msg, off_resp[M_NSHARED + R_REASON], PyBytes_FromStringAndSize(b + rs, eol - rs)) <
            0)
        return -2;
    return 0;
}

static PyObject *
parse(PyObject *self, PyObject *data)
{
    if (!ready || !PyBytes_CheckExact(data))
        Py_RETURN_NONE;
    const char *b = PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (n < 4 || b[0] == '\r' || b[0] == '\n')
        Py_RETURN_NONE;
    int is_request = memcmp(b, "SIP/", 4) != 0;
    Py_ssize_t eol = find_crlf(b, 0, n);
    if (eol <= 0)
        Py_RETURN_NONE;
    Py_ssize_t hend = blank_line(b, eol, n);
    if (hend < 0 || eol + 2 >= hend)
        Py_RETURN_NONE;
    if (memchr(b, '\0', (size_t)hend) != NULL || stray_line_end(b, hend + 4))
        Py_RETURN_NONE; /* a raw NUL (400 unless a quoted-pair's) or a bare CR or LF
                           (400) in the header block: the Python code decides */
    Py_ssize_t body_start = hend + 4, hstart = eol + 2;
    const Py_ssize_t *off = is_request ? off_req : off_resp;

    PyObject *msg = new_instance(is_request ? request_type : response_type);
    if (msg == NULL)
        return NULL;
    PyObject *hdrs = NULL;
    int rc = is_request ? request_line(b, eol, msg) : status_line(b, eol, msg);
    if (rc < 0)
        goto out;
    hdrs = scan_block(b, hstart, hend, fast_names);
    if (hdrs == NULL || put(msg, off[M_HDRS], hdrs) < 0)
        goto out; /* hdrs is now borrowed from msg */

    /* RFC 3261 section 8.1.1 mandatory headers, single ones once (else: Python answers) */
    /* every lookup below: NULL and an error set = error (out: returns NULL) */
    PyObject *via_spans = spans_of(hdrs, k_via);
    Py_ssize_t fs, fe, ts, te, cs, ce, qs, qe, ms = 0, me = 0, ls = 0, le = 0;
    if (via_spans == NULL || one_span(hdrs, k_from, n, &fs, &fe, 1) < 0 ||
        one_span(hdrs, k_to, n, &ts, &te, 1) < 0 ||
        one_span(hdrs, k_call_id, n, &cs, &ce, 1) < 0 ||
        one_span(hdrs, k_cseq, n, &qs, &qe, 1) < 0)
        goto out;
    int has_mf = one_span(hdrs, k_max_forwards, n, &ms, &me, 0);
    int has_cl = one_span(hdrs, k_content_length, n, &ls, &le, 0);
    if (has_mf < 0 || has_cl < 0)
        goto out;
    if (is_request) {
        if (spans_of(hdrs, k_date) != NULL || PyErr_Occurred())
            goto out; /* RFC 3261 section 20.17 GMT check: the Python code */
        PyObject *contacts = spans_of(hdrs, k_contact);
        if (contacts == NULL && PyErr_Occurred())
            goto out;
        Py_ssize_t nc = contacts != NULL ? PyList_GET_SIZE(contacts) : 0;
        for (Py_ssize_t k = 0; k < nc; k++) {
            Py_ssize_t s, e;
            if (span_at(PyList_GET_ITEM(contacts, k), n, &s, &e) < 0 ||
                memchr(b + s, '?', (size_t)(e - s)) != NULL)
                goto out; /* a '?' outside <> is an error: the Python code */
        }
    }

    struct fields f = {.cs = cs, .ce = ce, .qs = qs, .qe = qe, .ms = ms, .me = me,
                       .ls = ls, .le = le, .has_mf = has_mf, .has_cl = has_cl};
    PyObject *method =
        is_request ? *(PyObject **)((char *)msg + off_req[M_NSHARED + Q_METHOD]) : NULL;
    if (check_fields(b, &f, method ? PyBytes_AS_STRING(method) : NULL,
                     method ? PyBytes_GET_SIZE(method) : 0, n - body_start) < 0)
        goto out;
    cs = f.cs;
    ce = f.ce;
    long long cseq = f.cseq, mf = f.mf, cl = f.cl;
    Py_ssize_t avail = n - body_start;
    PyObject *cmethod = method ? Py_NewRef(method)
                               : PyBytes_FromStringAndSize(b + f.qm, f.qe - f.qm);
    if (cmethod == NULL)
        goto error;
    if (put(msg, off[M_CSEQ], pair(PyLong_FromLongLong(cseq), cmethod)) < 0)
        goto error;

    PyObject *vias = vias_of(b, n, via_spans);
    if (vias == NULL)
        goto out;
    if (put(msg, off[M_VIAS], vias) < 0)
        goto error;
    if (is_request) {
        PyObject *f = name_addr(b, fs, fe);
        if (f == NULL || put(msg, off_req[M_NSHARED + Q_FROM], f) < 0)
            goto out;
        PyObject *t = name_addr(b, ts, te);
        if (t == NULL || put(msg, off_req[M_NSHARED + Q_TO], t) < 0)
            goto out;
    } else {
        if (put(msg, off_resp[M_NSHARED + R_FROM_SPAN], span_tuple(fs, fe)) < 0 ||
            put(msg, off_resp[M_NSHARED + R_TO_SPAN], span_tuple(ts, te)) < 0 ||
            put_borrowed(msg, off_resp[M_NSHARED + R_FROM], Py_None) < 0 ||
            put_borrowed(msg, off_resp[M_NSHARED + R_TO], Py_None) < 0)
            goto error;
    }
    PyObject *body, *raw;
    if (!has_cl) {
        body = avail > 0 ? PyBytes_FromStringAndSize(b + body_start, avail)
                         : PyBytes_FromStringAndSize("", 0);
        raw = Py_NewRef(data);
    } else {
        body = cl ? PyBytes_FromStringAndSize(b + body_start, (Py_ssize_t)cl)
                  : PyBytes_FromStringAndSize("", 0);
        /* RFC 3261 section 18.3: octets past Content-Length are discarded */
        raw = cl < avail ? PyBytes_FromStringAndSize(b, body_start + (Py_ssize_t)cl)
                         : Py_NewRef(data);
    }
    if (body == NULL || raw == NULL) {
        Py_XDECREF(body);
        Py_XDECREF(raw);
        goto error;
    }
    (void)put(msg, off[M_BODY], body);
    (void)put(msg, off[M_RAW], raw);
    if (put(msg, off[M_CALL_ID], PyBytes_FromStringAndSize(b + cs, ce - cs)) < 0 ||
        put(msg, off[M_MAX_FORWARDS], has_mf ? PyLong_FromLongLong(mf) : Py_NewRef(Py_None)) <
            0 ||
        put(msg, off[M_CONTENT_LENGTH],
            has_cl ? PyLong_FromLongLong(cl) : Py_NewRef(Py_None)) < 0 ||
        put(msg, off[M_HEADERS_END], PyLong_FromSsize_t(hend)) < 0 ||
        put(msg, off[M_HSTART], PyLong_FromSsize_t(hstart)) < 0 ||
        put(msg, off[M_BUF], PyBytes_FromStringAndSize(b, hend)) < 0 ||
        put_borrowed(msg, off[M_ALL], Py_None) < 0 ||
        put_borrowed(msg, off[M_CACHE], Py_None) < 0)
        goto error;
    return msg;

out: /* decline: the Python parser answers */
    Py_DECREF(msg);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
error:
    Py_DECREF(msg);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* the lean forward of an in-dialog request (relay.scan_request)      */

static inline int
same_key(PyObject *canon, PyObject *key)
{
    Py_ssize_t n = PyBytes_GET_SIZE(key);
    return canon == key || (PyBytes_GET_SIZE(canon) == n &&
                            memcmp(PyBytes_AS_STRING(canon), PyBytes_AS_STRING(key), (size_t)n) == 0);
}

/* b[s1:e1] and b[s2:e2] equal, ignoring ASCII case */
static int
ci_same(const char *b, Py_ssize_t s1, Py_ssize_t e1, const char *c, Py_ssize_t s2, Py_ssize_t e2)
{
    if (e1 - s1 != e2 - s2)
        return 0;
    for (Py_ssize_t i = 0; i < e1 - s1; i++) {
        unsigned char x = (unsigned char)b[s1 + i], y = (unsigned char)c[s2 + i];
        if ((x >= 'A' && x <= 'Z' ? x + 32 : x) != (y >= 'A' && y <= 'Z' ? y + 32 : y))
            return 0;
    }
    return 1;
}

/* b[s:e] equals the lower-case literal `lit`, ignoring ASCII case */
static inline int
ci_is(const char *b, Py_ssize_t s, Py_ssize_t e, const char *lit)
{
    return ci_same(b, s, e, lit, 0, (Py_ssize_t)strlen(lit));
}

struct edit {
    Py_ssize_t s, e; /* b[s:e] becomes rep */
    const char *rep;
    Py_ssize_t rlen;
};

/* b[from:n] with the edits applied; NULL = error. The edits are sorted here by
 * start; they must then lie inside [from, n], each with s <= e and a
 * non-negative replacement length, and not overlap (one may start where the
 * previous one ends): anything else raises ValueError instead of writing
 * outside the result. */
static PyObject *
edited(const char *b, Py_ssize_t from, Py_ssize_t n, struct edit *ed, int k)
{
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && ed[j].s < ed[j - 1].s; j--) {
            struct edit t = ed[j];
            ed[j] = ed[j - 1];
            ed[j - 1] = t;
        }
    if (from < 0 || n < from) {
        PyErr_SetString(PyExc_ValueError, "edited: the range is not inside the buffer");
        return NULL;
    }
    Py_ssize_t len = n - from, prev = from;
    for (int i = 0; i < k; i++) {
        if (ed[i].s < prev || ed[i].e < ed[i].s || ed[i].e > n || ed[i].rlen < 0 ||
            (ed[i].rlen > 0 && ed[i].rep == NULL)) {
            PyErr_Format(PyExc_ValueError,
                         "edited: edit [%zd, %zd) overlaps another or lies outside [%zd, %zd]",
                         ed[i].s, ed[i].e, from, n);
            return NULL;
        }
        if (ed[i].rlen > PY_SSIZE_T_MAX - len) {
            PyErr_NoMemory();
            return NULL;
        }
        len += ed[i].rlen - (ed[i].e - ed[i].s);
        prev = ed[i].e;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, len);
    if (out == NULL)
        return NULL;
    char *o = PyBytes_AS_STRING(out);
    Py_ssize_t pos = from;
    for (int i = 0; i < k; i++) {
        memcpy(o, b + pos, (size_t)(ed[i].s - pos));
        o += ed[i].s - pos;
        if (ed[i].rlen > 0)
            memcpy(o, ed[i].rep, (size_t)ed[i].rlen);
        o += ed[i].rlen;
        pos = ed[i].e;
    }
    memcpy(o, b + pos, (size_t)(n - pos));
    return out;
}

#define EDITS_MAX 8

/* _edited(data, from, [(s, e, rep), ...]) -> bytes: edited() on its own, for the
 * tests (tests/unit/test_sip_csafe.py); the edits are checked as scan_request's */
static PyObject *
edited_py(PyObject *self, PyObject *args)
{
    PyObject *data, *edits;
    Py_ssize_t from;
    if (!PyArg_ParseTuple(args, "SnO!", &data, &from, &PyList_Type, &edits))
        return NULL;
    Py_ssize_t k = PyList_GET_SIZE(edits);
    if (k > EDITS_MAX) {
        PyErr_Format(PyExc_ValueError, "_edited: at most %d edits", EDITS_MAX);
        return NULL;
    }
    struct edit ed[EDITS_MAX];
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *rep;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(edits, i), "nnS", &ed[i].s, &ed[i].e, &rep))
            return NULL;
        ed[i].rep = PyBytes_AS_STRING(rep); /* kept alive by `edits` (the GIL is held) */
        ed[i].rlen = PyBytes_GET_SIZE(rep);
    }
    return edited(PyBytes_AS_STRING(data), from, PyBytes_GET_SIZE(data), ed, (int)k);
}

/* The Route value v[0:vn] is exactly `route` but for a dialog stamp (";sdt=" and
 * 16 lower-case hex digits, proxy/sip/core.py STAMP_PARAM) right before any of
 * the entries' closing ">": our Record-Route as the caller echoes it. */
static int
same_route(const char *v, Py_ssize_t vn, const char *route, Py_ssize_t rn)
{
    Py_ssize_t i = 0, j = 0;
    while (i < vn && j < rn) {
        if (v[i] == route[j]) {
            i++;
            j++;
            continue;
        }
        if (route[j] != '>' || vn - i < 5 + 16 + 1 || memcmp(v + i, ";sdt=", 5) != 0)
            return 0;
        for (Py_ssize_t k = i + 5; k < i + 5 + 16; k++)
            if (!((v[k] >= '0' && v[k] <= '9') || (v[k] >= 'a' && v[k] <= 'f')))
                return 0;
        i += 5 + 16; /* then v[i] must be the '>' of route[j] */
        if (v[i] != '>')
            return 0;
    }
    return i == vn && j == rn;
}

/* scan_request(data, src_host, src_port, route[, decline[, decline2]]) -> (material, hstart,
 * tail) | None
 *
 * An in-dialog ACK or BYE that came over UDP from a caller (not from the
 * softswitch) in its common shape, forwarded exactly as ProxyCore._request and
 * _forward_bytes forward it after the full parse: `material` is what
 * ProxyCore._branch hashes into our branch, and the forwarded request is
 * data[:hstart] + our Via line + tail. The common shape: everything parse()
 * accepts, read the way it reads it (header names through the same table),
 * and besides: one Via line whose host is the source address, with an
 * RFC 3261 branch, no received, no parameter twice and "rport" only bare
 * (filled in place, RFC 3581 section 4); a To tag not ours ("sc..."); one
 * Max-Forwards, not 0; at most one Route line, exactly `route` (our
 * Record-Route, removed: RFC 3261 section 16.4) but for the dialog stamps of its
 * entries (same_route); a sip: Request-URI; no
 * Proxy-Require; no header named `decline` or `decline2` (canonical names
 * message.index_header indexes: the core strips them, on the full path); Content-Length equal to the
 * body. Else None. */
static PyObject *
scan_request(PyObject *self, PyObject *args)
{
    PyObject *data, *route, *decline = NULL, *decline2 = NULL;
    const char *src;
    Py_ssize_t src_len;
    int src_port;
    if (!PyArg_ParseTuple(args, "Ss#iS|OO", &data, &src, &src_len, &src_port, &route, &decline,
                          &decline2))
        return NULL;
    if (decline == Py_None)
        decline = NULL;
    if (decline2 == Py_None)
        decline2 = NULL;
    if ((decline != NULL && !PyBytes_Check(decline)) ||
        (decline2 != NULL && !PyBytes_Check(decline2))) {
        PyErr_SetString(PyExc_TypeError, "scan_request: decline must be bytes or None");
        return NULL;
    }
    if (!ready)
        Py_RETURN_NONE;
    const char *b = PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (n < 8 || !(memcmp(b, "ACK ", 4) == 0 || memcmp(b, "BYE ", 4) == 0))
        Py_RETURN_NONE;
    Py_ssize_t eol = find_crlf(b, 0, n);
    if (eol <= 0)
        Py_RETURN_NONE;
    Py_ssize_t hend = blank_line(b, eol, n);
    if (hend < 0 || eol + 2 >= hend || memchr(b, '\0', (size_t)hend) != NULL ||
        stray_line_end(b, hend + 4))
        Py_RETURN_NONE; /* a raw NUL, a bare CR or LF: the full parse decides */
    Py_ssize_t m, us, ue;
    if (request_line_at(b, eol, &m, &us, &ue) < 0 || ue - us < 4 ||
        memcmp(b + us, "sip:", 4) != 0)
        Py_RETURN_NONE;
    Py_ssize_t hstart = eol + 2, avail = n - (hend + 4);

    /* the header lines, cut and named as scan_block does */
    enum { H_VIA, H_FROM, H_TO, H_CALL_ID, H_CSEQ, H_MF, H_CL, H_ROUTE, H_N };
    PyObject *keys[H_N] = {k_via, k_from, k_to, k_call_id, k_cseq, k_max_forwards,
                           k_content_length, k_route};
    int count[H_N] = {0};
    Py_ssize_t vs[H_N] = {0}, ve[H_N] = {0}, lst[H_N] = {0}; /* value, line start */
    Py_ssize_t start = hstart, end;
    do { /* one header line per round, the last one ending at hend */
        Py_ssize_t s;
        PyObject *canon;
        int rc = header_line(b, start, hend, fast_names, &end, &s, &canon);
        if (rc == -2)
            return NULL;
        if (rc < 0)
            Py_RETURN_NONE;
        if (PyBytes_GET_SIZE(canon) > 0) {
            int h = 0;
            while (h < H_N && !same_key(canon, keys[h]))
                h++;
            if (h < H_N) {
                if (count[h]++ == 0) {
                    vs[h] = s;
                    ve[h] = end;
                    lst[h] = start;
                }
            } else if (same_key(canon, k_date) || same_key(canon, k_proxy_require) ||
                       (same_key(canon, k_contact) &&
                        memchr(b + s, '?', (size_t)(end - s)) != NULL) ||
                       (decline != NULL && same_key(canon, decline)) ||
                       (decline2 != NULL && same_key(canon, decline2))) {
                /* the parser's or the core's own answer; `decline`, `decline2`:
                 * headers the core strips (the trusted provider header from a
                 * caller, the STIR/SHAKEN mark header from anyone) */
                Py_RETURN_NONE;
            }
        }
        start = end + 2;
    } while (end < hend);
    if (count[H_VIA] != 1 || count[H_FROM] != 1 || count[H_TO] != 1 ||
        count[H_CALL_ID] != 1 || count[H_CSEQ] != 1 || count[H_MF] != 1 || count[H_CL] > 1 ||
        count[H_ROUTE] > 1)
        Py_RETURN_NONE;
    struct fields f = {.cs = vs[H_CALL_ID], .ce = ve[H_CALL_ID], .qs = vs[H_CSEQ],
                       .qe = ve[H_CSEQ], .ms = vs[H_MF], .me = ve[H_MF], .ls = vs[H_CL],
                       .le = ve[H_CL], .has_mf = 1, .has_cl = count[H_CL]};
    if (check_fields(b, &f, b, m, avail) < 0 || f.mf == 0 || (f.has_cl ? f.cl : 0) != avail)
        Py_RETURN_NONE; /* Max-Forwards 0: 483 (RFC 3261 section 16.3) */
    struct na_at fa, ta;
    if (na_spans(b, vs[H_FROM], ve[H_FROM], &fa) < 0 ||
        na_spans(b, vs[H_TO], ve[H_TO], &ta) < 0 || ta.ts < 0 ||
        (ta.te - ta.ts >= 2 && b[ta.ts] == 's' && b[ta.ts + 1] == 'c'))
        Py_RETURN_NONE; /* no To tag: initial; "sc": a tag we minted (ACK absorbed) */
    Py_ssize_t rls = -1, rle = -1;
    if (count[H_ROUTE]) {
        Py_ssize_t s = vs[H_ROUTE], e = ve[H_ROUTE];
        strip(b, &s, &e);
        if (!same_route(b + s, e - s, PyBytes_AS_STRING(route), PyBytes_GET_SIZE(route)))
            Py_RETURN_NONE;
        rls = lst[H_ROUTE];
        rle = ve[H_ROUTE] + 2;
    }

    /* the Via (vias_of, via_value, params_dict) */
    Py_ssize_t s0 = vs[H_VIA], e0 = ve[H_VIA];
    struct via_at v;
    if (memchr(b + s0, ',', (size_t)(e0 - s0)) != NULL || via_head(b, &s0, &e0, &v) < 0)
        Py_RETURN_NONE;
    if (!ci_same(b, v.hs, v.he, src, 0, src_len))
        Py_RETURN_NONE; /* RFC 3261 section 18.2.1 received: the full path adds it */
    Py_ssize_t bs = -1, be = -1, rp = -1, ns_[8], ne_[8];
    int np = 0;
    /* the parameters b[v.sbe + 1:e0], one per ';' (none when sent-by ends the value) */
    Py_ssize_t ps = v.sbe + 1;
    int more = v.sbe < e0;
    while (more) {
        const char *semi = memchr(b + ps, ';', (size_t)(e0 - ps));
        Py_ssize_t pe = semi ? semi - b : e0;
        const char *eq = memchr(b + ps, '=', (size_t)(pe - ps));
        Py_ssize_t ns = ps, ne = eq ? eq - b : pe;
        strip(b, &ns, &ne);
        if (ne <= ns || np == 8)
            Py_RETURN_NONE;
        for (int k = 0; k < np; k++)
            if (ci_same(b, ns_[k], ne_[k], b, ns, ne))
                Py_RETURN_NONE; /* given twice: the full path rewrites the Via */
        ns_[np] = ns;
        ne_[np++] = ne;
        if (pe - ps == 5 && memcmp(b + ps, "rport", 5) == 0) {
            rp = pe; /* a bare ";rport", filled in place (RFC 3581 section 4) */
        } else if (ci_is(b, ns, ne, "received") || ci_is(b, ns, ne, "rport") ||
                   (pe - ps > 5 && memcmp(b + ps, "rport", 5) == 0)) {
            /* received, rport=x, "RPORT", "rportx" before it: the full path rewrites */
            Py_RETURN_NONE;
        } else if (ci_is(b, ns, ne, "branch")) {
            if (eq == NULL)
                Py_RETURN_NONE;
            bs = eq - b + 1;
            be = pe;
            strip(b, &bs, &be);
        }
        more = semi != NULL;
        ps = pe + 1;
    }
    if (bs < 0 || be - bs < 7 || memcmp(b + bs, "z9hG4bK", 7) != 0)
        Py_RETURN_NONE; /* RFC 2543 peers: the other branch material */

    /* ProxyCore._branch: branch|sent-by|Call-ID|CSeq number */
    char num[24];
    int nl = snprintf(num, sizeof num, "%lld", f.cseq);
    Py_ssize_t sbl = v.sbe - v.hs, cl = f.ce - f.cs;
    PyObject *material = PyBytes_FromStringAndSize(NULL, (be - bs) + sbl + cl + nl + 3);
    if (material == NULL)
        return NULL;
    char *o = PyBytes_AS_STRING(material);
    memcpy(o, b + bs, (size_t)(be - bs));
    o += be - bs;
    *o++ = '|';
    memcpy(o, b + v.hs, (size_t)sbl);
    o += sbl;
    *o++ = '|';
    memcpy(o, b + f.cs, (size_t)cl);
    o += cl;
    *o++ = '|';
    memcpy(o, num, (size_t)nl);

    /* RFC 3581 section 4 rport, RFC 3261 section 16.6 step 3 Max-Forwards, 16.4 Route */
    char port[16], mf[24];
    struct edit ed[3];
    int k = 0;
    if (rp >= 0)
        ed[k++] = (struct edit){rp, rp, port, snprintf(port, sizeof port, "=%d", src_port)};
    ed[k++] = (struct edit){vs[H_MF], ve[H_MF], mf, snprintf(mf, sizeof mf, " %lld", f.mf - 1)};
    if (rls >= 0)
        ed[k++] = (struct edit){rls, rle, "", 0};
    PyObject *tail = edited(b, hstart, n, ed, k);
    if (tail == NULL) {
        Py_DECREF(material);
        return NULL;
    }
    return Py_BuildValue("(NnN)", material, hstart, tail);
}

/* top_key(data, initial) -> bytes | False | None: relay.top_key / relay.initial_key
 * in C. The RFC 3261 section 17.2.3 key (branch + b"|" + sent-by lower-cased,
 * transaction.via_key) of the top Via when it is the first header line, one
 * value in the common shape the C Via reader takes (relay._via_at: no comma,
 * not folded) with a magic-cookie branch; `initial`: and the first "To:" line
 * after it carries no ";tag="/";TAG=" (relay.initial_via). False: the shape
 * was read and there is no key (relay's answer is None too); None: declined,
 * the Python reference decides. */
static PyObject *
top_key(PyObject *self, PyObject *args)
{
    PyObject *buf_obj;
    int initial;
    if (!PyArg_ParseTuple(args, "Sp", &buf_obj, &initial))
        return NULL;
    if (!ready)
        Py_RETURN_NONE;
    const char *b = PyBytes_AS_STRING(buf_obj);
    Py_ssize_t n = PyBytes_GET_SIZE(buf_obj);
    Py_ssize_t eol = find_crlf(b, 0, n);
    if (eol < 0 || eol + 7 > n || memcmp(b + eol, "\r\nVia: ", 7) != 0)
        Py_RETURN_FALSE; /* top_via: the first header line is not "Via: " */
    Py_ssize_t s = eol + 7;
    Py_ssize_t ve = find_crlf(b, s, n);
    if (ve < 0)
        Py_RETURN_NONE;
    if (memchr(b + s, ',', (size_t)(ve - s)) != NULL ||
        (ve + 2 < n && (b[ve + 2] == ' ' || b[ve + 2] == '\t')))
        Py_RETURN_FALSE; /* relay._via_at: several values, or folded */
    Py_ssize_t vs = s, vend = ve;
    struct via_at v;
    if (via_head(b, &vs, &vend, &v) < 0)
        Py_RETURN_NONE; /* the C Via reader declines: the Python reader decides */
    if (v.sbe == vend)
        Py_RETURN_FALSE; /* no parameters: no branch */
    PyObject *params = params_dict(b, v.sbe + 1, vend);
    if (params == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    PyObject *branch = PyDict_GetItemWithError(params, k_branch); /* borrowed */
    if (branch == NULL && PyErr_Occurred()) {
        Py_DECREF(params);
        return NULL;
    }
    if (branch == NULL || branch == Py_None || PyBytes_GET_SIZE(branch) < 7 ||
        memcmp(PyBytes_AS_STRING(branch), "z9hG4bK", 7) != 0) {
        Py_DECREF(params);
        Py_RETURN_FALSE; /* no RFC 3261 branch: no key from the top Via alone */
    }
    if (initial) {
        /* relay._line(data, b"\r\nTo:", ve, len(data)): the first "\r\nTo:" from the
         * Via's CRLF on; its value up to the next CRLF (none: up to len - 1, as
         * Python's find(..., s, -1) reads it) must hold no ";tag=" / ";TAG=" */
        Py_ssize_t i = ve, ts = -1;
        while (i + 5 <= n) {
            const char *p = memchr(b + i, '\r', (size_t)(n - i));
            if (p == NULL)
                break;
            i = p - b;
            if (i + 5 <= n && memcmp(b + i, "\r\nTo:", 5) == 0) {
                ts = i + 5;
                break;
            }
            i++;
        }
        if (ts < 0) {
            Py_DECREF(params);
            Py_RETURN_FALSE;
        }
        Py_ssize_t te = find_crlf(b, ts, n);
        if (te < 0)
            te = n - 1;
        for (Py_ssize_t k = ts; k + 5 <= te; k++) {
            if (b[k] == ';' && (memcmp(b + k, ";tag=", 5) == 0 || memcmp(b + k, ";TAG=", 5) == 0)) {
                Py_DECREF(params);
                Py_RETURN_FALSE;
            }
        }
    }
    Py_ssize_t bl = PyBytes_GET_SIZE(branch), sl = v.sbe - v.hs;
    PyObject *key = PyBytes_FromStringAndSize(NULL, bl + 1 + sl);
    if (key == NULL) {
        Py_DECREF(params);
        return NULL;
    }
    char *kp = PyBytes_AS_STRING(key);
    memcpy(kp, PyBytes_AS_STRING(branch), (size_t)bl);
    kp[bl] = '|';
    for (Py_ssize_t k = 0; k < sl; k++) {
        unsigned char c = (unsigned char)b[v.hs + k];
        kp[bl + 1 + k] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    Py_DECREF(params);
    return key;
}

/* branch_hash(branch) -> int | None: steer.branch_hash (the owner hash the
 * kernel's steering program computes): h = h * 31 + c (mod 2**32) over at
 * most 16 bytes after the "z9hG4bK" cookie, then h ^= h >> 16; h ^= h >> 8. */
static PyObject *
branch_hash(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "branch_hash() takes bytes");
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    if (n < 7 || memcmp(b, "z9hG4bK", 7) != 0)
        Py_RETURN_NONE;
    Py_ssize_t end = n < 7 + 16 ? n : 7 + 16;
    uint32_t h = 0;
    for (Py_ssize_t i = 7; i < end; i++)
        h = h * 31u + b[i];
    h ^= h >> 16;
    h ^= h >> 8;
    return PyLong_FromUnsignedLong(h);
}

static PyMethodDef methods[] = {
    {"top_key", top_key, METH_VARARGS,
     "top_key(data, initial) -> bytes | False | None: relay.top_key / relay.initial_key "
     "in C; None declines."},
    {"branch_hash", branch_hash, METH_O,
     "branch_hash(branch) -> int | None: steer.branch_hash in C."},
    {"scan_headers", scan_headers, METH_VARARGS,
     "scan_headers(buf, pos, hend, fast) -> dict | None: message._scan_headers in C."},
    {"init", init, METH_VARARGS,
     "init(Request, Response, Via, NameAddr, fast, cseq_max, mf_max, cl_max): "
     "the classes and limits parse() uses."},
    {"parse_via", parse_via, METH_VARARGS,
     "parse_via(buf, s, e, line_start) -> Via | None: message._parse_via for the common "
     "shape; None declines."},
    {"scan_response", scan_response, METH_VARARGS,
     "scan_response(data, our_via) -> (status, Via, cut) | None: relay.scan_response in C."},
    {"scan_request", scan_request, METH_VARARGS,
     "scan_request(data, src_host, src_port, route[, decline[, decline2]]) -> (material, "
     "hstart, tail) "
     "| None: the lean forward of an in-dialog ACK/BYE from a caller; None declines."},
    {"_edited", edited_py, METH_VARARGS,
     "_edited(data, from, [(s, e, rep)]) -> bytes: data[from:] with the edits applied "
     "(scan_request's rewrite, for tests); ValueError for overlapping or outside edits."},
    {"_name_cache", name_cache_py, METH_VARARGS,
     "_name_cache([spelling]) -> (slots, used, pinned) | bool: the C header-name cache's "
     "size and fill, or whether it holds spelling (for tests)."},
    {"parse", parse, METH_O,
     "parse(data) -> Request | Response | None: message._parse for the common shapes; "
     "None declines."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scan", "The common path of proxy/sip/message.py in C.", -1,
    methods,
};

/* The constant names, made once per process: a second import (the module
 * dropped from sys.modules) reuses them instead of leaking the first set. */
static int
make_keys(void)
{
    static const struct {
        PyObject **slot;
        const char *text;
    } keys[] = {
        {&k_via, "via"}, {&k_from, "from"}, {&k_to, "to"}, {&k_call_id, "call-id"},
        {&k_cseq, "cseq"}, {&k_max_forwards, "max-forwards"},
        {&k_content_length, "content-length"}, {&k_date, "date"}, {&k_contact, "contact"},
        {&k_branch, "branch"}, {&k_received, "received"}, {&k_rport, "rport"},
        {&k_tag, "tag"}, {&k_version, "SIP/2.0"}, {&k_route, "route"},
        {&k_proxy_require, "proxy-require"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (*keys[i].slot == NULL && (*keys[i].slot = PyBytes_FromString(keys[i].text)) == NULL)
            return -1; /* the ones made stay for the next attempt */
    for (int k = 0; k < 6; k++)
        if (transports[k] == NULL &&
            (transports[k] = PyBytes_FromString(transport_names[k])) == NULL)
            return -1;
    return 0;
}

PyMODINIT_FUNC
PyInit__scan(void)
{
    init_classes();
    if (make_keys() < 0)
        return NULL;
    return PyModule_Create(&module);
}
