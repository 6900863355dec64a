/* The flood's and the clients' blocks of lines cut in C: `node.blocks` uses this module in
 * place of `protocol.IAMAT_LINES.findall` and `protocol.CHANGELOC_LINES.findall` when the
 * compiled core is built (`tools/build_native.py`).
 *
 * A line is accepted exactly when the regex accepts it, and its fields are the regex's
 * groups; a hypothesis test holds the two to each other (tests/node/test_blocks.py). The
 * regex spends about 4 ns a byte matching; a line here is a handful of byte tests, and
 * most of its cost is the bytes objects of its fields.
 *
 * Each of the two returns the fields of the block's lines from the first up to the first line
 * that is not of its form, which the caller tells by the list being shorter than the block.
 * `lines_within` counts a read's lines and checks their length for `protocol.LineSplitter`
 * in one pass, where Python counts and then splits the read whole to measure its lines.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef const unsigned char *cursor;

static inline int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* The bytes that bytes.split() splits on: space, tab, LF, CR, FF, VT. */
static inline int
is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* `[^ \t\n\r\f\v]+`: one field as bytes.split() cuts them. */
static int
is_field(cursor p, cursor end)
{
    if (p == end)
        return 0;
    for (; p < end; p++)
        if (is_space(*p))
            return 0;
    return 1;
}

/* `\d+(?:\.\d+)?`: a time_sent. */
static int
is_decimal(cursor p, cursor end)
{
    cursor q = p;
    while (q < end && is_digit(*q))
        q++;
    if (q == p)
        return 0;
    if (q == end)
        return 1;
    if (*q != '.')
        return 0;
    cursor fraction = ++q;
    while (q < end && is_digit(*q))
        q++;
    return q > fraction && q == end;
}

/* `\d+\.\d{9}`: a time_received. */
static int
is_time_received(cursor p, cursor end)
{
    cursor q = p;
    while (q < end && is_digit(*q))
        q++;
    if (q == p || end - q != 10 || *q != '.')
        return 0;
    for (q++; q < end; q++)
        if (!is_digit(*q))
            return 0;
    return 1;
}

/* A coordinate after its sign, `DIGITS[.DIGITS]` whose value is at most `limit` (90 for a
 * latitude, 180 for a longitude) whatever its leading or trailing zeros: the integer part
 * below `limit` with any fraction, or equal to it with a fraction of zeros only. That is
 * what LOCATION_IN_RANGE's two alternatives say. */
static int
is_degrees(cursor p, cursor end, int limit)
{
    cursor q = p;
    while (q < end && is_digit(*q))
        q++;
    if (q == p)
        return 0;
    cursor integer_end = q;
    int fraction_zero = 1;
    if (q < end) {
        if (*q != '.')
            return 0;
        cursor fraction = ++q;
        for (; q < end && is_digit(*q); q++)
            if (*q != '0')
                fraction_zero = 0;
        if (q == fraction || q != end)
            return 0;
    }
    cursor digit = p;
    while (digit < integer_end && *digit == '0')
        digit++;
    if (integer_end - digit > 3)
        return 0;
    int value = 0;
    for (; digit < integer_end; digit++)
        value = value * 10 + (*digit - '0');
    return value < limit || (value == limit && fraction_zero);
}

/* LOCATION_IN_RANGE: `[+-]LATITUDE[+-]LONGITUDE`, each in range. A coordinate holds no
 * sign, so the second sign is where the longitude starts. */
static int
is_location(cursor p, cursor end)
{
    if (p == end || (*p != '+' && *p != '-'))
        return 0;
    cursor q = p + 1;
    while (q < end && *q != '+' && *q != '-')
        q++;
    if (q == end)
        return 0;
    return is_degrees(p + 1, q, 90) && is_degrees(q + 1, end, 180);
}

/* The next space in [p, end), or end. */
static inline cursor
next_space(cursor p, cursor end)
{
    cursor q = memchr(p, ' ', (size_t)(end - p));
    return q ? q : end;
}

static inline PyObject *
bytes_of(cursor p, cursor end)
{
    return PyBytes_FromStringAndSize((const char *)p, end - p);
}

/* A tuple of the bytes of the `n` spans [starts[i], ends[i]); NULL on an error. */
static PyObject *
fields_tuple(Py_ssize_t n, cursor *starts, cursor *ends)
{
    PyObject *fields = PyTuple_New(n);
    if (fields == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *field = bytes_of(starts[i], ends[i]);
        if (field == NULL) {
            Py_DECREF(fields);
            return NULL;
        }
        PyTuple_SET_ITEM(fields, i, field);
    }
    return fields;
}

/* `IAMAT client location time_sent`: 1 and (client, location, time_sent), 0 when the
 * line is not of that form, -1 on an error. */
static int
iamat_line(cursor p, cursor end, PyObject **out)
{
    static const char keyword[] = "IAMAT ";
    const Py_ssize_t k = sizeof keyword - 1;
    if (end - p < k || memcmp(p, keyword, (size_t)k) != 0)
        return 0;
    cursor starts[3], ends[3];
    starts[0] = p + k;
    ends[0] = next_space(starts[0], end);
    if (ends[0] == end)
        return 0;
    starts[1] = ends[0] + 1;
    ends[1] = next_space(starts[1], end);
    if (ends[1] == end)
        return 0;
    starts[2] = ends[1] + 1;
    ends[2] = end;
    if (!is_field(starts[0], ends[0]) || !is_location(starts[1], ends[1])
        || !is_decimal(starts[2], ends[2]))
        return 0;
    *out = fields_tuple(3, starts, ends);
    return *out ? 1 : -1;
}

/* `CHANGELOC client location time_sent time_received server`: 1 and (client, the packed
 * record from location to server, location, time_sent, time_received, server), 0 when the
 * line is not of that form, -1 on an error. */
static int
changeloc_line(cursor p, cursor end, PyObject **out)
{
    static const char keyword[] = "CHANGELOC ";
    const Py_ssize_t k = sizeof keyword - 1;
    if (end - p < k || memcmp(p, keyword, (size_t)k) != 0)
        return 0;
    cursor starts[6], ends[6];
    starts[0] = p + k;
    ends[0] = next_space(starts[0], end);
    if (ends[0] == end)
        return 0;
    starts[1] = ends[0] + 1; /* the packed record */
    ends[1] = end;
    cursor q = starts[1];
    for (int i = 2; i < 5; i++) {
        starts[i] = q;
        ends[i] = next_space(q, end);
        if (ends[i] == end)
            return 0;
        q = ends[i] + 1;
    }
    starts[5] = q;
    ends[5] = end;
    if (!is_field(starts[0], ends[0]) || !is_location(starts[2], ends[2])
        || !is_decimal(starts[3], ends[3]) || !is_time_received(starts[4], ends[4])
        || !is_field(starts[5], ends[5]))
        return 0;
    *out = fields_tuple(6, starts, ends);
    return *out ? 1 : -1;
}

typedef int (*line_form)(cursor, cursor, PyObject **);

/* The fields of `block`'s LF-separated lines up to the first not of `form`. */
static PyObject *
cut_block(PyObject *block, line_form form)
{
    if (!PyBytes_Check(block)) {
        PyErr_Format(PyExc_TypeError, "a block must be bytes, not %.100s",
                     Py_TYPE(block)->tp_name);
        return NULL;
    }
    cursor p = (cursor)PyBytes_AS_STRING(block);
    cursor end = p + PyBytes_GET_SIZE(block);
    PyObject *found = PyList_New(0);
    if (found == NULL)
        return NULL;
    for (;;) {
        cursor line_end = memchr(p, '\n', (size_t)(end - p));
        if (line_end == NULL)
            line_end = end;
        PyObject *fields = NULL;
        int got = form(p, line_end, &fields);
        if (got < 0)
            goto error;
        if (got == 0)
            break;
        int appended = PyList_Append(found, fields);
        Py_DECREF(fields);
        if (appended < 0)
            goto error;
        if (line_end == end)
            break;
        p = line_end + 1;
    }
    return found;
error:
    Py_DECREF(found);
    return NULL;
}

static PyObject *
iamat_lines(PyObject *module, PyObject *block)
{
    return cut_block(block, iamat_line);
}

static PyObject *
changeloc_lines(PyObject *module, PyObject *block)
{
    return cut_block(block, changeloc_line);
}

/* lines_within(block, max_line): how many LF-separated lines `block` holds, or -1 when one
 * of them is longer than `max_line` bytes. */
static PyObject *
lines_within(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "lines_within takes a bytes block and an int");
        return NULL;
    }
    Py_ssize_t max_line = PyLong_AsSsize_t(args[1]);
    if (max_line == -1 && PyErr_Occurred())
        return NULL;
    cursor p = (cursor)PyBytes_AS_STRING(args[0]);
    cursor end = p + PyBytes_GET_SIZE(args[0]);
    Py_ssize_t count = 1;
    for (;;) {
        cursor line_end = memchr(p, '\n', (size_t)(end - p));
        if (line_end == NULL)
            line_end = end;
        if (line_end - p > max_line)
            return PyLong_FromLong(-1);
        if (line_end == end)
            return PyLong_FromSsize_t(count);
        count++;
        p = line_end + 1;
    }
}

static PyMethodDef methods[] = {
    {"iamat_lines", iamat_lines, METH_O,
     "(client, location, time_sent) of each IAMAT line of a block, up to the first line "
     "that is not one."},
    {"changeloc_lines", changeloc_lines, METH_O,
     "(client, packed, location, time_sent, time_received, server) of each CHANGELOC line "
     "of a block, up to the first line that is not one."},
    {"lines_within", (PyCFunction)(void (*)(void))lines_within, METH_FASTCALL,
     "lines_within(block, max_line): how many LF-separated lines the block holds, or -1 "
     "when one is longer than max_line bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "node._blocks",
    .m_doc = "Blocks of IAMAT and CHANGELOC lines cut and checked in C.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__blocks(void)
{
    return PyModuleDef_Init(&module_def);
}
