/* A kept record's journal entry and flood line, built in C: `node.kept` uses this module in
 * place of its Python `append_kept` when the compiled core is built
 * (`tools/build_native.py`).
 *
 * The entry is `node.entries`'s form, `%08x body\n` with the CRC-32 of the body
 * `client packed`, and the line is `protocol.CHANGELOC_LINE`'s, byte for byte the same as
 * the Python's (tests/node/test_kept.py holds the two to each other). Python's way formats
 * three bytes objects with `%` and calls the CRC through its argument parser for every
 * record kept; here the two results are written straight into their bytes objects.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* CRC-32 as zlib computes it (reflected, polynomial 0xEDB88320), eight bytes a step. */
static uint32_t crc_table[8][256];

static void
build_crc_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            crc_table[k][i] = (crc_table[k - 1][i] >> 8) ^ crc_table[0][crc_table[k - 1][i] & 0xff];
}

static inline uint32_t
little_endian_word(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t
crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    uint32_t c = ~crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t one = little_endian_word(p) ^ c;
        uint32_t two = little_endian_word(p + 4);
        c = crc_table[7][one & 0xff] ^ crc_table[6][(one >> 8) & 0xff]
            ^ crc_table[5][(one >> 16) & 0xff] ^ crc_table[4][one >> 24]
            ^ crc_table[3][two & 0xff] ^ crc_table[2][(two >> 8) & 0xff]
            ^ crc_table[1][(two >> 16) & 0xff] ^ crc_table[0][two >> 24];
    }
    while (n--)
        c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

static const char HEX[] = "0123456789abcdef";
static const char CHANGELOC[] = "CHANGELOC ";

/* append_kept(entries, flood, client, packed): the entry `crc body\n` onto `entries` and
 * the line `CHANGELOC body\n` onto `flood`, where body is `client packed`. */
static PyObject *
append_kept(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "append_kept takes 4 arguments, not %zd", nargs);
        return NULL;
    }
    PyObject *entries = args[0], *flood = args[1], *client = args[2], *packed = args[3];
    if (!PyList_Check(entries) || !PyList_Check(flood)) {
        PyErr_SetString(PyExc_TypeError, "append_kept: entries and flood must be lists");
        return NULL;
    }
    if (!PyBytes_Check(client) || !PyBytes_Check(packed)) {
        PyErr_SetString(PyExc_TypeError, "append_kept: client and packed must be bytes");
        return NULL;
    }
    Py_ssize_t client_size = PyBytes_GET_SIZE(client), packed_size = PyBytes_GET_SIZE(packed);
    Py_ssize_t body_size = client_size + 1 + packed_size;
    const Py_ssize_t prefix = sizeof CHANGELOC - 1;

    PyObject *line = PyBytes_FromStringAndSize(NULL, prefix + body_size + 1);
    if (line == NULL)
        return NULL;
    char *body = PyBytes_AS_STRING(line) + prefix;
    memcpy(PyBytes_AS_STRING(line), CHANGELOC, (size_t)prefix);
    memcpy(body, PyBytes_AS_STRING(client), (size_t)client_size);
    body[client_size] = ' ';
    memcpy(body + client_size + 1, PyBytes_AS_STRING(packed), (size_t)packed_size);
    body[body_size] = '\n';

    PyObject *entry = PyBytes_FromStringAndSize(NULL, 9 + body_size + 1);
    if (entry == NULL) {
        Py_DECREF(line);
        return NULL;
    }
    char *e = PyBytes_AS_STRING(entry);
    uint32_t crc = crc32_update(0, (const unsigned char *)body, (size_t)body_size);
    for (int i = 7; i >= 0; i--, crc >>= 4)
        e[i] = HEX[crc & 0xf];
    e[8] = ' ';
    memcpy(e + 9, body, (size_t)body_size + 1); /* the body and its LF */

    int failed = PyList_Append(entries, entry) < 0 || PyList_Append(flood, line) < 0;
    Py_DECREF(entry);
    Py_DECREF(line);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"append_kept", (PyCFunction)(void (*)(void))append_kept, METH_FASTCALL,
     "append_kept(entries, flood, client, packed): a kept record's journal entry onto "
     "entries, its CHANGELOC line onto flood."},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    build_crc_table();
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "node._kept",
    .m_doc = "A kept record's journal entry and flood line, built in C.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__kept(void)
{
    return PyModuleDef_Init(&module_def);
}
