/* The herd's record order in C: `node.store` uses this module's `newer_than_packed` in
 * place of its Python one when the compiled core is built (`tools/build_native.py`).
 *
 * It decides what the Python decides, by the same rules in the same steps
 * (tests/node/test_order.py holds the two to each other and to the plain order key), but
 * reads the packed record held where it lies: the Python splits it into four bytes objects
 * and builds the order keys as tuples for every update of a client already known, which
 * under the flood is most of a relay's records.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    const char *p;
    Py_ssize_t n;
} span;

static span
span_of(PyObject *bytes)
{
    return (span){PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes)};
}

/* -1, 0 or 1 as Python compares the two as bytes. */
static int
compare(span a, span b)
{
    Py_ssize_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, (size_t)n) : 0;
    if (c)
        return c < 0 ? -1 : 1;
    return a.n < b.n ? -1 : a.n > b.n;
}

static Py_ssize_t
find_dot(span s)
{
    const char *dot = s.n ? memchr(s.p, '.', (size_t)s.n) : NULL;
    return dot ? dot - s.p : -1;
}

/* store._valid_time_key: the integer digits without leading zeros (their count first),
 * then the fraction digits without trailing zeros. */
static int
compare_time_keys(span a, span b)
{
    span whole[2], fraction[2];
    span t[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        Py_ssize_t dot = find_dot(t[i]);
        whole[i] = dot < 0 ? t[i] : (span){t[i].p, dot};
        fraction[i] = dot < 0 ? (span){t[i].p + t[i].n, 0}
                              : (span){t[i].p + dot + 1, t[i].n - dot - 1};
        while (whole[i].n && whole[i].p[0] == '0') {
            whole[i].p++;
            whole[i].n--;
        }
        while (fraction[i].n && fraction[i].p[fraction[i].n - 1] == '0')
            fraction[i].n--;
    }
    if (whole[0].n != whole[1].n)
        return whole[0].n < whole[1].n ? -1 : 1;
    int c = compare(whole[0], whole[1]);
    return c ? c : compare(fraction[0], fraction[1]);
}

/* The first of `n` comparisons that is not 0, as tuples compare. */
static int
first_difference(const int *c, int n)
{
    for (int i = 0; i < n; i++)
        if (c[i])
            return c[i];
    return 0;
}

/* newer_than_packed(location, time_sent, time_received, server, held) -> bool */
static PyObject *
newer_than_packed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "newer_than_packed takes 5 arguments, not %zd", nargs);
        return NULL;
    }
    for (int i = 0; i < 5; i++)
        if (!PyBytes_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "newer_than_packed: every argument must be bytes");
            return NULL;
        }
    span location = span_of(args[0]), sent = span_of(args[1]), received = span_of(args[2]);
    span server = span_of(args[3]), held = span_of(args[4]);

    /* held is `location time_sent time_received server`: exactly three spaces. */
    span part[4];
    const char *p = held.p, *end = held.p + held.n;
    for (int i = 0; i < 3; i++) {
        const char *space = memchr(p, ' ', (size_t)(end - p));
        if (space == NULL) {
            PyErr_SetString(PyExc_ValueError, "a packed record has four fields");
            return NULL;
        }
        part[i] = (span){p, space - p};
        p = space + 1;
    }
    part[3] = (span){p, end - p};
    if (memchr(p, ' ', (size_t)(end - p)) != NULL) {
        PyErr_SetString(PyExc_ValueError, "a packed record has four fields");
        return NULL;
    }
    span held_location = part[0], held_sent = part[1], held_received = part[2];
    span held_server = part[3];

    int newer;
    if (compare(sent, held_sent) == 0) {
        int c[3] = {compare(server, held_server), compare(location, held_location),
                    compare(received, held_received)};
        newer = first_difference(c, 3) > 0;
    }
    else if (sent.n == held_sent.n && sent.n && sent.p[0] != '0' && held_sent.p[0] != '0'
             && find_dot(sent) == find_dot(held_sent)) {
        newer = compare(sent, held_sent) > 0;
    }
    else {
        int c[5] = {compare_time_keys(sent, held_sent), compare(server, held_server),
                    compare(location, held_location), compare(sent, held_sent),
                    compare(received, held_received)};
        newer = first_difference(c, 5) > 0;
    }
    return PyBool_FromLong(newer);
}

static PyMethodDef methods[] = {
    {"newer_than_packed", (PyCFunction)(void (*)(void))newer_than_packed, METH_FASTCALL,
     "newer_than_packed(location, time_sent, time_received, server, held): whether a valid "
     "record with these fields comes after the packed record held."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "node._order",
    .m_doc = "The herd's record order, decided in C.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__order(void)
{
    return PyModuleDef_Init(&module_def);
}
