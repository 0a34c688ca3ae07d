/* One function, from its bytes to its verdicts, in C: `stack.analyse_function()`.
 *
 * The Python path decodes the function, applies the prefilter (filters.may_use_red_zone), reads the
 * facts of each instruction text (filters.facts), filters (may_access_below), closes over the
 * registers that may hold a stack address (closure), cuts blocks (stack._Analyser._blocks) and then
 * runs the dataflow.
 * Building a Python tuple per instruction and looking up its facts were most of what remained once
 * the dataflow ran in C, so this does the same steps over capstone's own records.
 *
 * What each text means stays in Python: the prefilter's test (`filters.matters`) and the facts of a
 * text (`filters.fact_fields`) are asked of Python; the facts once per shape of text (its numbers
 * made 0, as filters._facts_of_text), kept in a table. tests/test_stackflow.py compares both paths
 * on every function of real archives.
 */
#include "_stackflow.h"

#include <stdlib.h>
#include <string.h>

/* filters.KIND_CODES */
enum { K_NONE, K_CALL, K_RET, K_JMP, K_JCC };

/* The facts of one text, as the closure and the blocks use them: `carries` folded into the
 * registers that get a stack address (`gets`) and, per register, those it may carry one to. */
typedef struct {
    uint8_t kind, always, below;
    uint16_t names, inside, derefs, gets;
    uint16_t sources;     /* the registers with carries */
    uint16_t carries[16];
} Facts;

#define MNEMONIC (sizeof(((cs_insn *)0)->mnemonic))
#define OPERANDS (sizeof(((cs_insn *)0)->op_str))

typedef struct {
    uint32_t generation; /* the entry is empty unless this is the table's (which starts at 1) */
    uint32_t hash;
    char mnemonic[MNEMONIC];
    char op_str[OPERANDS];
    Facts facts;
} Known;

#ifndef KNOWN /* tests build with a small table, to exercise an emptied one */
#define KNOWN (1 << 16)
#endif

static Known *known;
static uint32_t generation = 1;
static size_t known_used;

void rzc_forget_facts(void) {
    generation++;
    known_used = 0;
}

static int count_bits(uint32_t mask) { return __builtin_popcount(mask); }

static int bit_index(uint32_t mask) { return __builtin_ctz(mask); }

/* The facts Python gives for (mnemonic, op_str), read into `out`. They are kept by shape until
 * flow_setup() runs again: `fact_fields` must depend on the text alone, as filters.facts does. */
static int ask_facts(PyObject *fact_fields, const char *mnemonic, const char *op_str, Facts *out) {
    PyObject *m = PyUnicode_DecodeASCII(mnemonic, (Py_ssize_t)strnlen(mnemonic, MNEMONIC), NULL);
    Py_ssize_t length = (Py_ssize_t)strnlen(op_str, OPERANDS);
    PyObject *o = m == NULL ? NULL : PyUnicode_DecodeASCII(op_str, length, NULL);
    PyObject *found = o == NULL ? NULL : PyObject_CallFunctionObjArgs(fact_fields, m, o, NULL);
    Py_XDECREF(m);
    Py_XDECREF(o);
    if (found == NULL) return -1;
    int kind, always, below;
    unsigned long names, inside, derefs;
    PyObject *carries;
    if (!PyTuple_Check(found)) {
        Py_DECREF(found);
        PyErr_SetString(PyExc_TypeError, "fact_fields must give a tuple (see filters.fact_fields)");
        return -1;
    }
    int ok = PyArg_ParseTuple(found, "ikpOkkp", &kind, &names, &always, &carries, &inside, &derefs, &below);
    memset(out, 0, sizeof *out);
    PyObject *fast = ok ? PySequence_Fast(carries, "carries must be a sequence") : NULL;
    if (fast != NULL) {
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
            unsigned long src, dst;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "kk", &src, &dst)) {
                ok = 0;
                break;
            }
            if (src > 0xFFFF || dst > 0xFFFF || (src & (src - 1))) {
                PyErr_SetString(PyExc_ValueError, "carries are (register bit or 0, register bits)");
                ok = 0;
                break;
            }
            if (src == 0) out->gets |= (uint16_t)dst;
            else {
                out->carries[bit_index((uint32_t)src)] |= (uint16_t)dst;
                out->sources |= (uint16_t)src;
            }
        }
        Py_DECREF(fast);
    } else {
        ok = 0;
    }
    Py_DECREF(found);
    if (!ok) return -1;
    if (names > 0xFFFF || inside > 0xFFFF || derefs > 0xFFFF || kind < K_NONE || kind > K_JCC) {
        PyErr_SetString(PyExc_ValueError, "facts out of range");
        return -1;
    }
    out->kind = (uint8_t)kind;
    out->always = (uint8_t)always;
    out->below = (uint8_t)below;
    out->names = (uint16_t)names;
    out->inside = (uint16_t)inside;
    out->derefs = (uint16_t)derefs;
    return 0;
}

static int is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* filters._NUMBER.sub("0", text): every number that stands alone (not after a word character or
 * `%`), `0x` and lowercase hex digits or decimal digits, made 0. The result is never longer. */
static void shape_of(const char *text, size_t limit, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < limit && text[i];) {
        char c = text[i];
        if (c >= '0' && c <= '9' && (i == 0 || (!is_word(text[i - 1]) && text[i - 1] != '%'))) {
            if (c == '0' && i + 2 < limit && text[i + 1] == 'x' && is_hex(text[i + 2])) {
                i += 2;
                while (i < limit && is_hex(text[i])) i++;
            } else {
                while (i < limit && text[i] >= '0' && text[i] <= '9') i++;
            }
            out[n++] = '0';
        } else {
            out[n++] = c;
            i++;
        }
    }
    out[n] = '\0';
}

/* shape(text) -> shape_of(text), for tests/test_stackflow.py to compare with filters._NUMBER. */
PyObject *rzc_shape(PyObject *self, PyObject *args) {
    const char *text;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "s#", &text, &n)) return NULL;
    char *out = malloc((size_t)n + 1);
    if (out == NULL) return PyErr_NoMemory();
    shape_of(text, (size_t)n, out);
    PyObject *found = PyUnicode_FromString(out);
    free(out);
    return found;
}

/* filters.facts of one instruction: from the table, else from Python. */
static int facts_of(const cs_insn *insn, PyObject *fact_fields, Facts *out) {
    /* A text that names no register says nothing beyond its mnemonic (as filters.facts), and the
     * facts of a text are those of its shape (filters._facts_of_text): the table keeps shapes, and
     * Python is asked once per shape. */
    char shape[OPERANDS];
    shape[0] = '\0';
    if (strchr(insn->op_str, '%') != NULL) shape_of(insn->op_str, OPERANDS, shape);
    const char *op_str = shape;
    uint32_t hash = 2166136261u;
    for (const char *c = insn->mnemonic; *c && c < insn->mnemonic + MNEMONIC; c++)
        hash = (hash ^ (unsigned char)*c) * 16777619u;
    hash = (hash ^ 0xFFu) * 16777619u;
    for (const char *c = op_str; *c && c < op_str + OPERANDS; c++)
        hash = (hash ^ (unsigned char)*c) * 16777619u;
    if (known == NULL) {
        known = calloc(KNOWN, sizeof *known);
        if (known == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (known_used >= KNOWN / 2) {
        generation++;
        known_used = 0;
    }
    for (uint32_t at = hash & (KNOWN - 1);; at = (at + 1) & (KNOWN - 1)) {
        Known *k = &known[at];
        if (k->generation != generation) {
            if (ask_facts(fact_fields, insn->mnemonic, op_str, out) < 0) return -1;
            k->generation = generation;
            k->hash = hash;
            strncpy(k->mnemonic, insn->mnemonic, MNEMONIC);
            strncpy(k->op_str, op_str, OPERANDS);
            k->facts = *out;
            known_used++;
            return 0;
        }
        if (k->hash == hash && strncmp(k->mnemonic, insn->mnemonic, MNEMONIC) == 0 &&
            strncmp(k->op_str, op_str, OPERANDS) == 0) {
            *out = k->facts;
            return 0;
        }
    }
}

/* filters.closure: the registers that can ever hold a stack address, as a mask. */
static uint32_t closure(const Facts *facts, size_t n, int index_registers) {
    uint32_t edges[16] = {0}, tracked = BIT(rzc_rsp());
    for (size_t i = 0; i < n; i++) {
        const Facts *f = &facts[i];
        tracked |= f->gets;
        for (uint32_t from = f->sources; from; from &= from - 1) {
            int r = bit_index(from);
            edges[r] |= f->carries[r];
        }
        if (index_registers && count_bits(f->inside) >= 2)
            for (uint32_t regs = f->inside; regs; regs &= regs - 1) edges[bit_index(regs)] |= f->inside;
    }
    for (uint32_t todo = tracked; todo;) {
        int r = bit_index(todo);
        todo &= todo - 1;
        uint32_t fresh = edges[r] & ~tracked;
        tracked |= fresh;
        todo |= fresh;
    }
    return tracked;
}

/* filters.may_access_below */
static int may_access_below(const Facts *facts, size_t n) {
    uint32_t derefs = 0;
    for (size_t i = 0; i < n; i++) {
        if (facts[i].below) return 1;
        derefs |= facts[i].derefs;
    }
    derefs &= ~BIT(rzc_rsp());
    return derefs != 0 && (derefs & closure(facts, n, 0)) != 0;
}

/* lite.branch_target: `int(op_str, 16)` of an operand text that starts with "0x", or the value of
 * one made of decimal digits only, else none. */
static int branch_target(const char *op_str, uint64_t *out, int *fits) {
    if (*op_str >= '0' && *op_str <= '9' && strncmp(op_str, "0x", 2) != 0) {
        uint64_t value = 0;
        int big = 0;
        const char *c = op_str;
        for (; *c >= '0' && *c <= '9'; c++) {
            if (value > (UINT64_MAX - 9) / 10) big = 1;
            value = value * 10 + (uint64_t)(*c - '0');
        }
        if (*c) return 0;
        *out = value;
        *fits = !big;
        return 1;
    }
    if (strncmp(op_str, "0x", 2) != 0) return 0;
    const char *c = op_str + 2;
    uint64_t value = 0;
    int digits = 0, big = 0, underscore = 0;
    if (*c == '_') { /* int("0x_1f", 16): one underscore may follow the prefix */
        underscore = 1;
        c++;
    }
    for (;; c++) {
        int d = -1;
        if (*c >= '0' && *c <= '9') d = *c - '0';
        else if (*c >= 'a' && *c <= 'f') d = *c - 'a' + 10;
        else if (*c >= 'A' && *c <= 'F') d = *c - 'A' + 10;
        if (d < 0) {
            /* Python's int() takes one underscore between digits, and whitespace around */
            if (*c == '_' && !underscore) {
                underscore = 1;
                continue;
            }
            break;
        }
        underscore = 0;
        if (value >> 60) big = 1;
        value = value << 4 | (uint64_t)d;
        digits++;
    }
    if (underscore) return 0;
    while (*c == ' ' || (*c >= '\t' && *c <= '\r') || (*c >= 0x1c && *c <= 0x1f)) c++;
    if (!digits || *c) return 0;
    *out = value;
    *fits = !big;
    return 1;
}

/* stack._Analyser._unrelocated: a rel32 of zero in a jmp or jcc, waiting for its relocation. */
static int unrelocated(const uint8_t *code, Py_ssize_t length, uint64_t base, const cs_insn *insn) {
    size_t n;
    const uint8_t *raw = rzc_bytes_at(code, length, base, insn->address, insn->size, &n);
    if (n < 5 || memcmp(raw + n - 4, "\0\0\0\0", 4) != 0) return 0;
    return raw[n - 5] == 0xE9 || (n >= 6 && raw[n - 6] == 0x0F && raw[n - 5] >= 0x80 && raw[n - 5] <= 0x8F);
}

typedef struct {
    uint8_t kind, has_target;
    Py_ssize_t to; /* the instruction branched to, or -1 */
} End;

/* stack._Analyser._blocks */
static int cut_blocks(Flow *f, const cs_insn *insns, size_t n, const Facts *facts, int relocatable,
                      const uint8_t *code, Py_ssize_t length, uint64_t base) {
    End *ends = calloc(n, sizeof *ends);
    uint8_t *leader = calloc(n, 1);
    Py_ssize_t *block_of = malloc(n * sizeof *block_of);
    int status = -1;
    if (ends == NULL || leader == NULL || block_of == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    leader[0] = 1;
    for (size_t i = 0; i < n; i++) {
        ends[i].to = -1;
        uint8_t kind = facts[i].kind;
        if (kind == K_NONE || kind == K_CALL) continue;
        ends[i].kind = kind;
        uint64_t target = 0;
        int fits = 0;
        if (kind != K_RET && branch_target(insns[i].op_str, &target, &fits)) {
            ends[i].has_target = 1;
            if (relocatable && unrelocated(code, length, base, &insns[i])) fits = 0; /* another function's */
            if (fits) ends[i].to = rzc_index_of_address(insns, n, target);
        }
        if (i + 1 < n) leader[i + 1] = 1;
        if (ends[i].to >= 0) leader[ends[i].to] = 1;
    }
    Py_ssize_t nblocks = 0;
    for (size_t i = 0; i < n; i++) block_of[i] = leader[i] ? nblocks++ : -1;
    if (rzc_flow_alloc(f, nblocks) < 0) goto done;
    Py_ssize_t b = 0;
    for (size_t i = 0; i < n; i++) {
        if (!leader[i]) continue;
        Block *block = &f->blocks[b];
        size_t end = i + 1;
        while (end < n && !leader[end]) end++;
        block->start = (Py_ssize_t)i;
        block->end = (Py_ssize_t)end;
        block->succs = malloc(2 * sizeof *block->succs);
        if (block->succs == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        const End *last = &ends[end - 1];
        if ((last->kind == K_NONE || last->kind == K_JCC) && end < n) block->succs[block->nsuccs++] = b + 1;
        if ((last->kind == K_JMP || last->kind == K_JCC) && last->to >= 0)
            block->succs[block->nsuccs++] = block_of[last->to];
        block->indirect = last->kind == K_JMP && !last->has_target;
        b++;
    }
    status = 0;
done:
    free(ends);
    free(leader);
    free(block_of);
    return status;
}

/* analyse_function(lite_handle, detail_handle, code, base, relocatable, matters, fact_fields)
 *   -> None when `matters` (None: no prefilter) rejects the function or capstone decodes nothing,
 *      else (accesses, unknown), each access (address, text, kind, rsp offset, size, benign).
 * `lite_handle` is decode.lite_decoder()'s, `detail_handle` decode.decoder()'s. With `matters`,
 * a function that filters.may_access_below rejects gives ([], 0), as stack.analyse does. */
PyObject *rzc_analyse_function(PyObject *self, PyObject *args) {
    unsigned long long lite_handle, detail_handle, base;
    Py_buffer code;
    int relocatable;
    PyObject *matters, *fact_fields, *result = NULL;
    if (!rzc_configured() || !rzc_flow_ready()) return NULL;
    if (!PyArg_ParseTuple(args, "KKy*KpOO", &lite_handle, &detail_handle, &code, &base, &relocatable,
                          &matters, &fact_fields))
        return NULL;
    cs_insn *insns = NULL;
    size_t n = rzc_disasm((csh)lite_handle, code.buf, (size_t)code.len, base, 0, &insns);
    Facts *facts = NULL;
    Place *places = NULL;
    uint8_t *relevant = NULL;
    Flow flow;
    memset(&flow, 0, sizeof flow);
    if (n == 0) {
        /* as the Python path: rejected by the prefilter (None), or nothing to analyse */
        result = matters == Py_None ? Py_BuildValue("([]i)", 0) : (Py_INCREF(Py_None), Py_None);
        goto done;
    }
    if (matters != Py_None) {
        int keep = rzc_kept(insns, n, matters);
        if (keep < 0) goto done;
        if (!keep) {
            result = Py_None;
            Py_INCREF(result);
            goto done;
        }
    }
    facts = malloc(n * sizeof *facts);
    if (facts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        if (facts_of(&insns[i], fact_fields, &facts[i]) < 0) goto done;
    if (matters != Py_None && !may_access_below(facts, n)) {
        result = Py_BuildValue("([]i)", 0);
        goto done;
    }
    uint32_t tracked = closure(facts, n, 1);
    if (cut_blocks(&flow, insns, n, facts, relocatable, code.buf, code.len, base) < 0) goto done;
    places = malloc(n * sizeof *places);
    relevant = malloc(n);
    if (places == NULL || relevant == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        places[i].address = insns[i].address;
        places[i].size = insns[i].size;
        relevant[i] = facts[i].always || (facts[i].names & tracked) != 0;
    }
    if (rzc_build_steps(&flow, (csh)detail_handle, code.buf, code.len, base, places, relevant) < 0) goto done;
    if (rzc_run(&flow) < 0) goto done;
    result = rzc_verdicts(&flow, insns, n);
done:
    rzc_flow_free(&flow);
    free(facts);
    free(places);
    free(relevant);
    if (n) rzc_free(insns, n);
    PyBuffer_Release(&code);
    return result;
}
