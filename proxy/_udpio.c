/*
 * proxy/_udpio.c: batched UDP receive and send for the worker (proxy/server/datapath.py).
 *
 * How this works: recv_batch(fd, n) takes up to n datagrams waiting on a
 * non-blocking UDP socket with one recvmmsg(2) call and returns them as a
 * list of (data, (host, port)); send_batch(fd, items) sends a list of
 * (data, host, port) with sendmmsg(2), one system call for up to 64 of them.
 * The worker drains its socket when the event loop says it is readable, runs
 * every datagram through the sans-I/O core, then sends everything the core
 * produced in one batch: under load one wake-up serves many datagrams, where
 * a protocol callback per datagram and a sendto(2) per answer cost more than
 * the SIP work itself (benchmarks/RESULTS.md). Nothing here interprets SIP.
 *
 * Errors: recv_batch returns what it got before EAGAIN (an empty list when
 * nothing waits) and raises OSError for any other error. send_batch returns
 * how many items went out, in order; it stops at EAGAIN (the caller queues the
 * rest) and raises OSError for an error on the first unsent item, so the
 * caller can count it, skip it and go on. A host that is not a numeric IPv4
 * or IPv6 address raises ValueError.
 *
 * IPv4 on an IPv6 socket: a socket of AF_INET6 that is not IPV6_V6ONLY
 * (Linux's default) also carries IPv4, its peers named by their IPv4-mapped
 * address ::ffff:a.b.c.d (RFC 4291 §2.5.5.2, RFC 3493 §3.7). recv_batch names
 * such a peer by its IPv4 address, as an AF_INET socket would, so the proxy
 * knows one name per peer (the trunk map, trusted sources and per-source
 * limits judge a.b.c.d, never a second spelling of it); send_batch(fd, items,
 * 1) maps an IPv4 host back for such a socket.
 *
 * Reentrancy: both calls keep the GIL. With MSG_DONTWAIT neither system call
 * waits, so releasing the GIL would buy nothing, and holding it keeps the
 * bytes objects of send_batch's list alive while the kernel reads them. The
 * message headers live on each call's stack. The 4 MiB of receive buffers are
 * too big for the stack and too costly to allocate per call, so one spare set
 * is kept: a call takes it (or, if another call holds it, allocates its own)
 * and gives it back when done, so no two calls ever share one.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64
#define DGRAM_MAX 65536

static char *spare; /* BATCH receive buffers of DGRAM_MAX, free for the next call */

/* receive buffers owned by the caller until give_back(); NULL = MemoryError */
static char *
take_buffers(void)
{
    char *buf = spare;
    spare = NULL;
    if (buf == NULL && (buf = PyMem_RawMalloc((size_t)BATCH * DGRAM_MAX)) == NULL)
        PyErr_NoMemory();
    return buf;
}

static void
give_back(char *buf)
{
    if (spare == NULL)
        spare = buf;
    else
        PyMem_RawFree(buf);
}

static PyObject *
address(const struct sockaddr_storage *sa)
{
    char host[INET6_ADDRSTRLEN];
    int port;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof host) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        port = ntohs(a->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        /* an IPv4 peer of a dual-stack socket: its IPv4 address (header comment) */
        const char *got = IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)
                              ? inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], host, sizeof host)
                              : inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        if (got == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        port = ntohs(a->sin6_port);
    } else {
        host[0] = '\0';
        port = 0;
    }
    return Py_BuildValue("(si)", host, port);
}

/* a and b give the same address() (family, address, port) */
static int
same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a,
                                 *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a,
                                  *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

static PyObject *
recv_batch(PyObject *self, PyObject *args)
{
    int fd, n;
    if (!PyArg_ParseTuple(args, "ii", &fd, &n))
        return NULL;
    if (n < 1)
        n = 1;
    if (n > BATCH)
        n = BATCH;
    struct mmsghdr rmsg[BATCH];
    struct iovec riov[BATCH];
    struct sockaddr_storage raddr[BATCH];
    char *rbuf = take_buffers();
    if (rbuf == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        riov[i].iov_base = rbuf + (size_t)i * DGRAM_MAX;
        riov[i].iov_len = DGRAM_MAX;
        memset(&rmsg[i].msg_hdr, 0, sizeof rmsg[i].msg_hdr);
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
        rmsg[i].msg_hdr.msg_name = &raddr[i];
        rmsg[i].msg_hdr.msg_namelen = sizeof raddr[i];
    }
    int got;
    do { /* MSG_DONTWAIT: never waits, so the GIL is kept */
        got = recvmmsg(fd, rmsg, (unsigned int)n, MSG_DONTWAIT, NULL);
    } while (got < 0 && errno == EINTR);
    PyObject *out;
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            out = PyList_New(0);
        else
            out = PyErr_SetFromErrno(PyExc_OSError);
        give_back(rbuf);
        return out;
    }
    out = PyList_New(got);
    if (out == NULL) {
        give_back(rbuf);
        return NULL;
    }
    for (int i = 0; i < got; i++) {
        PyObject *data = PyBytes_FromStringAndSize(rbuf + (size_t)i * DGRAM_MAX,
                                                   (Py_ssize_t)rmsg[i].msg_len);
        PyObject *addr = NULL;
        if (data != NULL) {
            /* a batch mostly comes from a few peers (an SBC, SIPp): the datagram
             * before from the same one shares its (host, port) tuple */
            if (i > 0 && same_peer(&raddr[i], &raddr[i - 1]))
                addr = Py_NewRef(PyTuple_GET_ITEM(PyList_GET_ITEM(out, i - 1), 1));
            else
                addr = address(&raddr[i]);
        }
        PyObject *item = addr ? PyTuple_Pack(2, data, addr) : NULL;
        Py_XDECREF(data);
        Py_XDECREF(addr);
        if (item == NULL) {
            Py_DECREF(out);
            give_back(rbuf);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    give_back(rbuf);
    return out;
}

/* sockaddr of a numeric host (an IPv4 one IPv4-mapped when `mapped`); 0, or
 * -1 with ValueError set */
static int
sockaddr_of(PyObject *host, long port, int mapped, struct sockaddr_storage *sa, socklen_t *len)
{
    const char *h = PyUnicode_AsUTF8(host);
    if (h == NULL)
        return -1;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return -1;
    }
    memset(sa, 0, sizeof *sa);
    struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
    if (mapped) {
        struct sockaddr_in6 *m6 = (struct sockaddr_in6 *)sa;
        if (inet_pton(AF_INET, h, &m6->sin6_addr.s6_addr[12]) == 1) {
            m6->sin6_addr.s6_addr[10] = 0xff;
            m6->sin6_addr.s6_addr[11] = 0xff;
            m6->sin6_family = AF_INET6;
            m6->sin6_port = htons((uint16_t)port);
            *len = sizeof *m6;
            return 0;
        }
        memset(sa, 0, sizeof *sa);
    } else if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof *a4;
        return 0;
    }
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not a numeric address: %R", host);
    return -1;
}

static PyObject *
send_batch(PyObject *self, PyObject *args)
{
    int fd, mapped = 0;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "iO!|p", &fd, &PyList_Type, &items, &mapped))
        return NULL;
    struct mmsghdr smsg[BATCH];
    struct iovec siov[BATCH];
    struct sockaddr_storage saddr[BATCH];
    Py_ssize_t total = PyList_GET_SIZE(items), done = 0;
    /* No Python code runs from reading an item to the sendmmsg that sends it
     * (the port must be an int: no __index__ call; the host's UTF-8 is made in
     * C), so the list and the bytes it holds cannot change under us. */
    while (done < total) {
        Py_ssize_t n = total - done < BATCH ? total - done : BATCH;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *it = PyList_GET_ITEM(items, done + i);
            if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 3 ||
                !PyBytes_Check(PyTuple_GET_ITEM(it, 0)) ||
                !PyUnicode_Check(PyTuple_GET_ITEM(it, 1)) ||
                !PyLong_Check(PyTuple_GET_ITEM(it, 2))) {
                PyErr_SetString(PyExc_TypeError, "items are (bytes, str host, int port)");
                return NULL;
            }
            long port = PyLong_AsLong(PyTuple_GET_ITEM(it, 2));
            if (port == -1 && PyErr_Occurred())
                return NULL;
            socklen_t alen;
            if (sockaddr_of(PyTuple_GET_ITEM(it, 1), port, mapped, &saddr[i], &alen) < 0)
                return NULL;
            PyObject *data = PyTuple_GET_ITEM(it, 0);
            siov[i].iov_base = PyBytes_AS_STRING(data);
            siov[i].iov_len = (size_t)PyBytes_GET_SIZE(data);
            memset(&smsg[i].msg_hdr, 0, sizeof smsg[i].msg_hdr);
            smsg[i].msg_hdr.msg_iov = &siov[i];
            smsg[i].msg_hdr.msg_iovlen = 1;
            smsg[i].msg_hdr.msg_name = &saddr[i];
            smsg[i].msg_hdr.msg_namelen = alen;
        }
        int sent;
        /* the GIL is kept (MSG_DONTWAIT never waits): nothing can drop the bytes
         * objects from `items` while the kernel reads them */
        do {
            sent = sendmmsg(fd, smsg, (unsigned int)n, MSG_DONTWAIT);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (done == 0)
                return PyErr_SetFromErrno(PyExc_OSError);
            break; /* report what went out; the next call raises for this item */
        }
        done += sent;
        if (sent < n)
            break; /* an error on item `done`: the next call reports it */
    }
    return PyLong_FromSsize_t(done);
}

static PyMethodDef methods[] = {
    {"recv_batch", recv_batch, METH_VARARGS,
     "recv_batch(fd, n) -> list[(bytes, (host, port))]: up to n waiting datagrams."},
    {"send_batch", send_batch, METH_VARARGS,
     "send_batch(fd, [(bytes, host, port)], mapped=False) -> int: how many went out, in order;\n"
     "mapped: fd is a dual-stack AF_INET6 socket, an IPv4 host goes as ::ffff:a.b.c.d."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_udpio", "Batched UDP receive and send (recvmmsg, sendmmsg).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__udpio(void)
{
    return PyModule_Create(&module);
}
