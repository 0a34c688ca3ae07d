/* capstone's decodings read in C: what `Cs.disasm_lite` and capstone's ctypes structures give, without
 * their per-instruction Python overhead.
 *
 * - decode(): the lite decoding of one function. `Cs.disasm_lite` reads each instruction through
 *   ctypes and yields a fresh tuple and strings, about half of a lite decoding's time.
 * - rzc_kept(), for `_function.c`: the prefilter's verdict on a function. Its test
 *   (`filters.matters`) stays in Python, its only definition: rzc_kept() only finds the instructions
 *   it has to look at (operand text naming "sp", or an `enter`) and asks it about each.
 * - detail(): the fields of one detailed decoding that `digest._make` reads, as plain ints.
 * - select(): the instructions of a function whose text starts with given prefixes (the branches
 *   and loads of %rax that `calls.object_calls` reads).
 *
 * The module's other sources run the stack analysis: `_stackflow.c` (analyse(), flow_setup()) and
 * `_function.c` (analyse_function(), shape()).
 *
 * All call the very capstone library and handles the Python package loaded, through the function
 * pointers of its ctypes binding. The structures come from the headers capstone ships, and
 * `redzone_check/native.py` compares their layout with capstone's ctypes declarations before using
 * this module; the Python path is used whenever it is missing or differs.
 */
#include "_capstone.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

disasm_fn rzc_disasm;
free_fn rzc_free;
regs_access_fn rzc_regs_access;

/* Mnemonics are few (about 1,500 distinct ones), so each is made once and shared. */
#ifndef SLOTS /* tests build with small tables, to exercise a full and an emptied one */
#define SLOTS 8192
#endif
#define SLOT_TEXT 32
static char slot_text[SLOTS][SLOT_TEXT];
static PyObject *slot_obj[SLOTS];

/* FNV-1a of a NUL-terminated text of at most `limit` characters; its length goes to `length`. */
static uint32_t text_hash_of(const char *text, size_t limit, size_t *length) {
    uint32_t hash = 2166136261u;
    size_t n = 0;
    for (const char *c = text; *c && n < limit; c++, n++) hash = (hash ^ (unsigned char)*c) * 16777619u;
    *length = n;
    return hash;
}

static PyObject *mnemonic_object(const char *text) {
    size_t n;
    uint32_t hash = text_hash_of(text, sizeof(((cs_insn *)0)->mnemonic), &n);
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
    size_t n = strnlen(text, sizeof(((cs_insn *)0)->op_str));
    return PyUnicode_DecodeASCII(text, (Py_ssize_t)n, NULL);
}

#ifndef TEXTS
#define TEXTS (1 << 18)
#endif
static PyObject *texts[TEXTS];
static uint32_t text_hash[TEXTS];
static size_t texts_used;

/* An operand text, shared with its earlier copies: its hash is then computed once. */
static PyObject *operand_text(const char *text) {
    size_t n;
    uint32_t hash = text_hash_of(text, sizeof(((cs_insn *)0)->op_str), &n);
    if (texts_used >= TEXTS / 2) {
        for (size_t i = 0; i < TEXTS; i++) Py_CLEAR(texts[i]);
        texts_used = 0;
    }
    for (uint32_t at = hash & (TEXTS - 1);; at = (at + 1) & (TEXTS - 1)) {
        PyObject *known = texts[at];
        if (known == NULL) {
            PyObject *made = PyUnicode_DecodeASCII(text, (Py_ssize_t)n, NULL);
            if (made == NULL) return NULL;
            texts[at] = made;
            text_hash[at] = hash;
            texts_used++;
            Py_INCREF(made);
            return made;
        }
        if (text_hash[at] == hash && (size_t)PyUnicode_GET_LENGTH(known) == n &&
            memcmp(PyUnicode_DATA(known), text, n) == 0) {
            Py_INCREF(known);
            return known;
        }
    }
}

static PyObject *record(const cs_insn *insn) {
    PyObject *address = PyLong_FromUnsignedLongLong(insn->address);
    PyObject *size = PyLong_FromLong(insn->size);
    PyObject *mnemonic = mnemonic_object(insn->mnemonic);
    PyObject *op_str = operand_text(insn->op_str);
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
int rzc_kept(const cs_insn *insns, size_t count, PyObject *matters) {
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
    unsigned long long disasm, free, regs_access;
    if (!PyArg_ParseTuple(args, "KKK", &disasm, &free, &regs_access)) return NULL;
    rzc_disasm = (disasm_fn)(uintptr_t)disasm;
    rzc_free = (free_fn)(uintptr_t)free;
    rzc_regs_access = (regs_access_fn)(uintptr_t)regs_access;
    Py_RETURN_NONE;
}

int rzc_configured(void) {
    if (rzc_disasm == NULL) PyErr_SetString(PyExc_RuntimeError, "_decoder.configure() was not called");
    return rzc_disasm != NULL;
}

#define FIELD(dict, name, value)                                                \
    do {                                                                        \
        PyObject *v = PyLong_FromSsize_t((Py_ssize_t)(value));                  \
        if (v == NULL || PyDict_SetItemString(dict, name, v) < 0) goto fail;   \
        Py_DECREF(v);                                                           \
    } while (0)

/* The size and offset of every field this module reads, named as in capstone's ctypes classes
 * (`_cs_insn`, `_cs_detail`, `x86.CsX86`, `x86.X86Op`, `x86.X86OpMem`, `x86.CsX86Encoding`). */
static PyObject *layout(PyObject *self, PyObject *unused) {
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    FIELD(d, "_cs_insn", sizeof(cs_insn));
    FIELD(d, "_cs_insn.id", offsetof(cs_insn, id));
    FIELD(d, "_cs_insn.address", offsetof(cs_insn, address));
    FIELD(d, "_cs_insn.size", offsetof(cs_insn, size));
    FIELD(d, "_cs_insn.mnemonic", offsetof(cs_insn, mnemonic));
    FIELD(d, "_cs_insn.op_str", offsetof(cs_insn, op_str));
    FIELD(d, "_cs_insn.detail", offsetof(cs_insn, detail));
    FIELD(d, "_cs_detail.arch", offsetof(cs_detail, x86));
    FIELD(d, "CsX86", sizeof(cs_x86));
    FIELD(d, "CsX86.prefix", offsetof(cs_x86, prefix));
    FIELD(d, "CsX86.op_count", offsetof(cs_x86, op_count));
    FIELD(d, "CsX86.operands", offsetof(cs_x86, operands));
    FIELD(d, "CsX86.encoding", offsetof(cs_x86, encoding));
    FIELD(d, "X86Op", sizeof(cs_x86_op));
    FIELD(d, "X86Op.type", offsetof(cs_x86_op, type));
    FIELD(d, "X86Op.value", offsetof(cs_x86_op, reg));
    FIELD(d, "X86Op.size", offsetof(cs_x86_op, size));
    FIELD(d, "X86Op.access", offsetof(cs_x86_op, access));
    FIELD(d, "X86OpMem", sizeof(x86_op_mem));
    FIELD(d, "X86OpMem.base", offsetof(x86_op_mem, base));
    FIELD(d, "X86OpMem.index", offsetof(x86_op_mem, index));
    FIELD(d, "X86OpMem.scale", offsetof(x86_op_mem, scale));
    FIELD(d, "X86OpMem.disp", offsetof(x86_op_mem, disp));
    FIELD(d, "CsX86Encoding.disp_offset", offsetof(cs_x86_encoding, disp_offset));
    FIELD(d, "CsX86Encoding.imm_offset", offsetof(cs_x86_encoding, imm_offset));
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

/* One operand as digest._make reads it: (type, reg, size, imm, base, index, disp, access, scale). */
static PyObject *operand(const cs_x86_op *op) {
    long long reg = 0, imm = 0, base = 0, index = 0, disp = 0, scale = 1;
    if (op->type == X86_OP_MEM) {
        base = op->mem.base;
        index = op->mem.index;
        disp = op->mem.disp;
        scale = op->mem.scale;
    } else if (op->type == X86_OP_REG) {
        reg = op->reg;
    } else if (op->type == X86_OP_IMM) {
        imm = op->imm;
    }
    return Py_BuildValue("(iLiLLLLiL)", (int)op->type, reg, (int)op->size, imm, base, index, disp,
                         (int)op->access, scale);
}

/* detail(handle, raw, address) -> None when capstone decodes nothing (or data it skipped), else
 * (id, prefix[0], operands, written, head): `written` are the register ids cs_regs_access says
 * the instruction writes (None when it fails), `head` the bytes before the displacement and
 * immediate. `handle` must have detail on. */
static PyObject *detail(PyObject *self, PyObject *args) {
    unsigned long long handle, address;
    Py_buffer raw;
    if (!rzc_configured()) return NULL;
    if (!PyArg_ParseTuple(args, "Ky*K", &handle, &raw, &address)) return NULL;
    cs_insn *insn = NULL;
    size_t count = rzc_disasm((csh)handle, raw.buf, (size_t)raw.len, address, 1, &insn);
    Py_ssize_t length = raw.len;
    PyBuffer_Release(&raw);
    if (count == 0) Py_RETURN_NONE;
    PyObject *out = NULL, *ops = NULL, *written = NULL;
    if (insn->id == 0 || insn->detail == NULL) {
        rzc_free(insn, count);
        Py_RETURN_NONE;
    }
    const cs_x86 *x = &insn->detail->x86;
    uint8_t n = x->op_count < 8 ? x->op_count : 8;
    ops = PyTuple_New(n);
    for (uint8_t i = 0; ops != NULL && i < n; i++) {
        PyObject *item = operand(&x->operands[i]);
        if (item == NULL) Py_CLEAR(ops);
        else PyTuple_SET_ITEM(ops, i, item);
    }
    if (ops == NULL) goto done;
    cs_regs read, write;
    uint8_t nread = 0, nwrite = 0;
    if (rzc_regs_access((csh)handle, insn, read, &nread, write, &nwrite) == CS_ERR_OK) {
        written = PyTuple_New(nwrite);
        for (uint8_t i = 0; written != NULL && i < nwrite; i++) {
            PyObject *reg = PyLong_FromLong(write[i]);
            if (reg == NULL) Py_CLEAR(written);
            else PyTuple_SET_ITEM(written, i, reg);
        }
        if (written == NULL) goto done;
    } else {
        written = Py_None;
        Py_INCREF(written);
    }
    /* digest._head: the first of the displacement and the immediate, else the whole length */
    Py_ssize_t disp = x->encoding.disp_offset, imm = x->encoding.imm_offset;
    Py_ssize_t head = disp && imm ? (disp < imm ? disp : imm) : disp ? disp : imm ? imm : length;
    out = Py_BuildValue("(IiOOn)", insn->id, (int)x->prefix[0], ops, written, head);
done:
    Py_XDECREF(ops);
    Py_XDECREF(written);
    rzc_free(insn, count);
    return out;
}

/* decode(handle, code, base) -> list of (address, size, mnemonic, op_str). A decoding that yields
 * nothing returns []: the caller then asks disasm_lite, which tells an empty input from a capstone
 * error. */
static PyObject *decode(PyObject *self, PyObject *args) {
    unsigned long long handle, base;
    Py_buffer code;
    if (!rzc_configured()) return NULL;
    if (!PyArg_ParseTuple(args, "Ky*K", &handle, &code, &base)) return NULL;
    cs_insn *insns = NULL;
    size_t count = rzc_disasm((csh)handle, code.buf, (size_t)code.len, base, 0, &insns);
    PyBuffer_Release(&code);
    PyObject *out = PyList_New((Py_ssize_t)count);
    for (size_t i = 0; out != NULL && i < count; i++) {
        PyObject *item = record(&insns[i]);
        if (item == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, (Py_ssize_t)i, item);
    }
    if (count) rzc_free(insns, count);
    return out;
}

/* Whether `text` starts with one of the strings of the tuple `prefixes` (checked by select()). */
static int starts_with_any(const char *text, PyObject *prefixes) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(prefixes); i++) {
        Py_ssize_t n;
        const char *prefix = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(prefixes, i), &n);
        if (prefix == NULL) return -1;
        if (strncmp(text, prefix, (size_t)n) == 0) return 1;
    }
    return 0;
}

/* select(handle, code, base, mnemonics, operands) -> the (address, size, mnemonic, op_str) of the
 * instructions whose mnemonic starts with one of `mnemonics` or whose operand text starts with one of
 * `operands` (tuples of str), in order; None when capstone decodes nothing, so that the caller
 * asks disasm_lite, which tells an empty input from a capstone error. The caller decides what
 * each selected instruction means: this only spares it the others (calls.object_calls). */
static PyObject *select_insns(PyObject *self, PyObject *args) {
    unsigned long long handle, base;
    Py_buffer code;
    PyObject *mnemonics, *operands;
    if (!rzc_configured()) return NULL;
    if (!PyArg_ParseTuple(args, "Ky*KO!O!", &handle, &code, &base, &PyTuple_Type, &mnemonics, &PyTuple_Type,
                          &operands))
        return NULL;
    Py_ssize_t nm = PyTuple_GET_SIZE(mnemonics);
    for (Py_ssize_t i = 0; i < nm + PyTuple_GET_SIZE(operands); i++) {
        PyObject *item = i < nm ? PyTuple_GET_ITEM(mnemonics, i) : PyTuple_GET_ITEM(operands, i - nm);
        if (!PyUnicode_Check(item)) {
            PyBuffer_Release(&code);
            PyErr_SetString(PyExc_TypeError, "prefixes must be str");
            return NULL;
        }
    }
    cs_insn *insns = NULL;
    size_t count = rzc_disasm((csh)handle, code.buf, (size_t)code.len, base, 0, &insns);
    PyBuffer_Release(&code);
    if (count == 0) Py_RETURN_NONE;
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < count; i++) {
        int wanted = starts_with_any(insns[i].mnemonic, mnemonics);
        if (wanted == 0) wanted = starts_with_any(insns[i].op_str, operands);
        if (wanted < 0) {
            Py_CLEAR(out);
            break;
        }
        if (!wanted) continue;
        PyObject *item = record(&insns[i]);
        if (item == NULL || PyList_Append(out, item) < 0) Py_CLEAR(out);
        Py_XDECREF(item);
    }
    rzc_free(insns, count);
    return out;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, "Set the addresses of cs_disasm, cs_free and cs_regs_access."},
    {"layout", layout, METH_NOARGS, "The sizes and offsets of the capstone structures, as compiled."},
    {"decode", decode, METH_VARARGS, "Lite decoding of one function."},
    {"detail", detail, METH_VARARGS, "The fields digest._make reads from one detailed decoding."},
    {"select", select_insns, METH_VARARGS, "The instructions of a function whose text has given prefixes."},
    {"flow_setup", rzc_flow_setup, METH_VARARGS, "The constants of the stack analysis (see _stackflow.c)."},
    {"analyse", rzc_analyse, METH_VARARGS, "The stack analysis of one function (stack._Analyser.run)."},
    {"shape", rzc_shape, METH_VARARGS, "An operand text with its numbers made 0 (filters._NUMBER)."},
    {"analyse_function", rzc_analyse_function, METH_VARARGS, "One function from its bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_decoder", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__decoder(void) { return PyModule_Create(&module); }
