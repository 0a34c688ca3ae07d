/* capstone's lite decoding of one function, as `Cs.disasm_lite` gives it, without its per-instruction
 * Python overhead, and with the prefilter's scan done before any Python object is made.
 *
 * `Cs.disasm_lite` reads each instruction through ctypes and yields a fresh tuple and strings:
 * about half of a lite decoding's time. This module calls the same capstone library (through the
 * function pointers of capstone's own ctypes binding, so it is the very library and handle the
 * Python package loaded) and builds the same list in C.
 *
 * The prefilter (`filters.may_use_red_zone`) stays in Python, its only definition: this module only
 * finds the instructions it has to look at (operand text naming "sp", or an `enter`), asks it about
 * each, and makes no list at all for a function it rejects (five functions in six of the benchmark
 * set). `redzone_check/native.py` checks the struct layout below against capstone's ctypes one
 * before using it, and the Python path is used whenever this module is missing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* capstone 5's cs_insn (capstone.h); native.py compares it with capstone's ctypes `_cs_insn`. */
typedef struct {
    unsigned int id;
    uint64_t address;
    uint16_t size;
    uint8_t bytes[24];
    char mnemonic[32];
    char op_str[160];
    void *detail;
} cs_insn;

typedef size_t (*disasm_fn)(size_t, const uint8_t *, size_t, uint64_t, size_t, cs_insn **);
typedef void (*free_fn)(cs_insn *, size_t);

static disasm_fn cs_disasm;
static free_fn cs_free;

/* Mnemonics are few (about 1,500 distinct ones), so each is made once and shared. */
#define SLOTS 8192
#define SLOT_TEXT 32
static char slot_text[SLOTS][SLOT_TEXT];
static PyObject *slot_obj[SLOTS];

static PyObject *mnemonic_object(const char *text) {
    uint32_t hash = 2166136261u; /* FNV-1a */
    size_t n = 0;
    for (const char *c = text; *c; c++, n++) hash = (hash ^ (unsigned char)*c) * 16777619u;
    for (uint32_t probe = 0; probe < SLOTS && n < SLOT_TEXT; probe++) {
        uint32_t at = (hash + probe) & (SLOTS - 1);
        if (slot_obj[at] == NULL) {
            PyObject *made = PyUnicode_DecodeASCII(text, (Py_ssize_t)n, NULL);
            if (made == NULL) return NULL;
            memcpy(slot_text[at], text, n + 1);
            slot_obj[at] = made;
            Py_INCREF(made);
            return made;
        }
        if (strcmp(slot_text[at], text) == 0) {
            Py_INCREF(slot_obj[at]);
            return slot_obj[at];
        }
    }
    return PyUnicode_DecodeASCII(text, (Py_ssize_t)n, NULL); /* a full table: made each time */
}

static PyObject *ascii_object(const char *text) {
    size_t n = strnlen(text, 160);
    return PyUnicode_DecodeASCII(text, (Py_ssize_t)n, NULL);
}

static PyObject *record(const cs_insn *insn) {
    PyObject *address = PyLong_FromUnsignedLongLong(insn->address);
    PyObject *size = PyLong_FromLong(insn->size);
    PyObject *mnemonic = mnemonic_object(insn->mnemonic);
    PyObject *op_str = ascii_object(insn->op_str);
    PyObject *tuple = PyTuple_New(4);
    if (address == NULL || size == NULL || mnemonic == NULL || op_str == NULL || tuple == NULL) {
        Py_XDECREF(address);
        Py_XDECREF(size);
        Py_XDECREF(mnemonic);
        Py_XDECREF(op_str);
        Py_XDECREF(tuple);
        return NULL;
    }
    PyTuple_SET_ITEM(tuple, 0, address);
    PyTuple_SET_ITEM(tuple, 1, size);
    PyTuple_SET_ITEM(tuple, 2, mnemonic);
    PyTuple_SET_ITEM(tuple, 3, op_str);
    return tuple;
}

/* Whether the prefilter must look at this instruction: the same tests as the head of the loop of
 * filters.may_use_red_zone, which then decides. */
static int candidate(const cs_insn *insn) {
    if (strstr(insn->op_str, "sp") != NULL) return 1;
    return strncmp(insn->mnemonic, "enter", 5) == 0;
}

/* 1: the prefilter keeps the function, 0: it rejects it, -1: a Python error. */
static int kept(const cs_insn *insns, size_t count, PyObject *matters) {
    for (size_t i = 0; i < count; i++) {
        if (!candidate(&insns[i])) continue;
        PyObject *mnemonic = mnemonic_object(insns[i].mnemonic);
        PyObject *op_str = mnemonic == NULL ? NULL : ascii_object(insns[i].op_str);
        if (op_str == NULL) {
            Py_XDECREF(mnemonic);
            return -1;
        }
        PyObject *verdict = PyObject_CallFunctionObjArgs(matters, mnemonic, op_str, NULL);
        Py_DECREF(mnemonic);
        Py_DECREF(op_str);
        if (verdict == NULL) return -1;
        int yes = PyObject_IsTrue(verdict);
        Py_DECREF(verdict);
        if (yes != 0) return yes;
    }
    return 0;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    unsigned long long disasm, free;
    if (!PyArg_ParseTuple(args, "KK", &disasm, &free)) return NULL;
    cs_disasm = (disasm_fn)(uintptr_t)disasm;
    cs_free = (free_fn)(uintptr_t)free;
    Py_RETURN_NONE;
}

static PyObject *layout(PyObject *self, PyObject *unused) {
    return Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:n}", "sizeof", (Py_ssize_t)sizeof(cs_insn), "id",
        (Py_ssize_t)offsetof(cs_insn, id), "address", (Py_ssize_t)offsetof(cs_insn, address), "size",
        (Py_ssize_t)offsetof(cs_insn, size), "mnemonic", (Py_ssize_t)offsetof(cs_insn, mnemonic),
        "op_str", (Py_ssize_t)offsetof(cs_insn, op_str), "detail", (Py_ssize_t)offsetof(cs_insn, detail));
}

/* decode(handle, code, base, matters) -> list of (address, size, mnemonic, op_str), or None when
 * `matters` (the prefilter's test of one instruction; None: no prefilter) says no instruction of
 * the function may matter. A decoding that yields nothing returns []: the caller then asks
 * disasm_lite, which tells an empty input from a capstone error. */
static PyObject *decode(PyObject *self, PyObject *args) {
    unsigned long long handle, base;
    Py_buffer code;
    PyObject *matters;
    if (cs_disasm == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_litedecode.configure() was not called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "Ky*KO", &handle, &code, &base, &matters)) return NULL;
    cs_insn *insns = NULL;
    size_t count = cs_disasm((size_t)handle, code.buf, (size_t)code.len, base, 0, &insns);
    PyBuffer_Release(&code);
    PyObject *out = NULL;
    if (matters != Py_None) {
        int keep = kept(insns, count, matters);
        if (keep <= 0) {
            if (count) cs_free(insns, count);
            if (keep < 0) return NULL;
            if (count == 0) return PyList_New(0);
            Py_RETURN_NONE;
        }
    }
    out = PyList_New((Py_ssize_t)count);
    for (size_t i = 0; out != NULL && i < count; i++) {
        PyObject *item = record(&insns[i]);
        if (item == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, (Py_ssize_t)i, item);
    }
    if (count) cs_free(insns, count);
    return out;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, "Set the addresses of cs_disasm and cs_free."},
    {"layout", layout, METH_NOARGS, "sizeof(cs_insn) and its fields' offsets, as compiled."},
    {"decode", decode, METH_VARARGS, "Lite decoding of one function, or None if the prefilter rejects it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_litedecode", NULL, -1, methods};

PyMODINIT_FUNC PyInit__litedecode(void) { return PyModule_Create(&module); }
