/* The stack analysis of one function in C: `stack._Analyser.run()` once its blocks are built.
 *
 * stack.py and stackstate.py are the definition; this is the same algorithm, step for step, over C
 * structures instead of Python dicts and objects (the detailed decodings and the dataflow were half
 * of the CPU of a scan). tests/test_stackflow.py compares the two on every function of real
 * archives. Python keeps everything before: the lite decoding, the filters, which instructions
 * matter (`relevant`), and the blocks.
 *
 * Every constant that says what an instruction is (capstone's ids, the sets of stores, compares and
 * non-accesses, the register of each capstone register id) is given by Python through flow_setup(),
 * from the very names stackstate.py and decode.py use; nothing here knows a capstone number.
 *
 * Values are __int128: the analysis' numbers are Python ints, and sums of a saturated bound
 * (2^62) and a 64-bit immediate, or a scaled index bound, do not fit in 64 bits.
 */
#include "_stackflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INF ((i128)1 << 62)
#define CONST (-((i128)1 << 50)) /* the "epoch" of plain numbers */
#define JOINED ((i128)1 << 40)   /* join_val's fresh epoch: -(1 << 40) - where */
#define WIDEN_AFTER 6
#define NONE (-1)
#define EMPTY 16 /* the "" key that `st.set(dst.reg or "", ...)` may write */
#define MAXREGID 1024
#define MAXINSID 8192

/* ---- the constants flow_setup() sets ---- */

static int setup_done;
static int8_t canon[MAXREGID]; /* capstone register id -> index in decode.GPRS, or NONE */
static uint8_t stores[MAXINSID], compares[MAXINSID], not_accesses[MAXINSID];
static int RSP, RBP;
static uint32_t caller_saved;
static int OP_REG, OP_IMM, OP_MEM, WRITE;
enum { I_ADD, I_AND, I_CALL, I_DEC, I_ENTER, I_INC, I_LEA, I_LEAVE, I_MOV, I_OR, I_POP, I_POPF,
       I_POPFQ, I_PUSH, I_PUSHF, I_PUSHFQ, I_SUB, I_XCHG, I_XOR, I_COUNT };
static unsigned ids[I_COUNT];


/* ---- the constants ---- */

static int read_ids(PyObject *seq, uint8_t *table) {
    memset(table, 0, MAXINSID);
    PyObject *it = PyObject_GetIter(seq);
    if (it == NULL) return -1;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        long v = PyLong_AsLong(item);
        Py_DECREF(item);
        if (v < 0 || v >= MAXINSID) {
            Py_DECREF(it);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "instruction id out of range");
            return -1;
        }
        table[v] = 1;
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* flow_setup(canon, ids, stores, compares, not_accesses, rsp, rbp, caller_saved, op_reg, op_imm,
 * op_mem, write): `canon[reg_id]` is the GPRS index of capstone register `reg_id` (255: none);
 * `ids` the capstone ids of ADD AND CALL DEC ENTER INC LEA LEAVE MOV OR POP POPF POPFQ PUSH PUSHF
 * PUSHFQ SUB XCHG XOR, in that order. */
PyObject *rzc_flow_setup(PyObject *self, PyObject *args) {
    Py_buffer table;
    PyObject *id_list, *st, *cmp, *na;
    unsigned long mask;
    if (!PyArg_ParseTuple(args, "y*OOOOiikiiii", &table, &id_list, &st, &cmp, &na, &RSP, &RBP, &mask,
                          &OP_REG, &OP_IMM, &OP_MEM, &WRITE))
        return NULL;
    setup_done = 0;
    if (table.len > MAXREGID) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "too many register ids");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < MAXREGID; i++) {
        uint8_t v = i < table.len ? ((const uint8_t *)table.buf)[i] : 255;
        canon[i] = v < 16 ? (int8_t)v : NONE;
    }
    PyBuffer_Release(&table);
    caller_saved = (uint32_t)mask;
    PyObject *fast = PySequence_Fast(id_list, "ids must be a sequence");
    if (fast == NULL) return NULL;
    if (PySequence_Fast_GET_SIZE(fast) != I_COUNT) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "wrong number of instruction ids");
        return NULL;
    }
    for (int i = 0; i < I_COUNT; i++)
        ids[i] = (unsigned)PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(fast, i));
    Py_DECREF(fast);
    if (PyErr_Occurred()) return NULL;
    if (read_ids(st, stores) < 0 || read_ids(cmp, compares) < 0 || read_ids(na, not_accesses) < 0)
        return NULL;
    if (RSP < 0 || RSP >= 16 || RBP < 0 || RBP >= 16) {
        PyErr_SetString(PyExc_ValueError, "register index out of range");
        return NULL;
    }
    rzc_forget_facts();
    setup_done = 1;
    Py_RETURN_NONE;
}

int rzc_flow_ready(void) {
    if (!setup_done) PyErr_SetString(PyExc_RuntimeError, "_decoder.flow_setup() was not called");
    return setup_done;
}

int rzc_rsp(void) { return RSP; }

static int in_set(const uint8_t *table, unsigned id) { return id < MAXINSID && table[id]; }

static int8_t reg_of(unsigned reg_id) { return reg_id < MAXREGID ? canon[reg_id] : NONE; }

/* ---- detailed decodings, cached by their bytes (digest.digest) ---- */

#ifndef DIGESTS /* tests build with a small table, to exercise an emptied one */
#define DIGESTS (1 << 16)
#endif
#define KEY 16

typedef struct {
    uint8_t used, decoded, len; /* decoded: capstone gave an instruction */
    uint8_t key[KEY];
    Digest d;
} Entry;

static Entry cache[DIGESTS];
static size_t cache_used;

static uint32_t bytes_hash(const uint8_t *raw, size_t n) {
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < n; i++) hash = (hash ^ raw[i]) * 16777619u;
    return hash;
}

/* 1 and `*out` when capstone decodes `raw`, 0 when it does not (digest() is None). */
static int decode_detail(csh handle, const uint8_t *raw, size_t n, uint64_t address, Digest *out) {
    cs_insn *insn = NULL;
    size_t count = rzc_disasm(handle, raw, n, address, 1, &insn);
    if (count == 0) return 0;
    int ok = insn->id != 0 && insn->detail != NULL;
    if (ok) {
        const cs_x86 *x = &insn->detail->x86;
        memset(out, 0, sizeof *out);
        out->id = insn->id;
        out->lock = x->prefix[0] == 0xF0;
        out->nops = x->op_count < MAXOPS ? x->op_count : MAXOPS;
        for (int i = 0; i < out->nops; i++) {
            const cs_x86_op *op = &x->operands[i];
            Op *o = &out->ops[i];
            o->type = (uint8_t)op->type;
            o->size = op->size;
            o->access = op->access;
            o->reg = o->base = o->idx = NONE;
            o->scale = 1;
            if ((int)op->type == OP_MEM) {
                o->base = reg_of(op->mem.base);
                o->idx = reg_of(op->mem.index);
                o->disp = op->mem.disp;
                o->scale = op->mem.scale;
            } else if ((int)op->type == OP_REG) {
                o->reg = reg_of(op->reg);
            } else if ((int)op->type == OP_IMM) {
                o->imm = op->imm;
            }
        }
        cs_regs read, write;
        uint8_t nread = 0, nwrite = 0;
        if (rzc_regs_access(handle, insn, read, &nread, write, &nwrite) == CS_ERR_OK) {
            for (int i = 0; i < nwrite; i++) {
                int8_t r = reg_of(write[i]);
                if (r != NONE) out->written |= BIT(r);
            }
        }
    }
    rzc_free(insn, count);
    return ok;
}

/* A decoding kept for the function being analysed only; NULL (and a Python error) out of memory. */
static Digest *spare_digest(Flow *f) {
    if (f->spare == NULL || f->spare->used == sizeof f->spare->digests / sizeof *f->spare->digests) {
        Spare *more = calloc(1, sizeof *more);
        if (more == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        more->next = f->spare;
        f->spare = more;
    }
    return &f->spare->digests[f->spare->used++];
}

/* digest.digest: the decoding of `raw`, `*found` NULL when capstone decodes nothing; -1 (and a
 * Python error) out of memory. Steps point into the cache, so it is emptied only between
 * functions (rzc_build_steps), and a function that fills it three quarters keeps the rest aside. */
static int digest_of(Flow *f, csh handle, const uint8_t *raw, size_t n, uint64_t address,
                     const Digest **found) {
    Entry *e = NULL;
    if (n <= KEY) {
        for (uint32_t at = bytes_hash(raw, n) & (DIGESTS - 1);; at = (at + 1) & (DIGESTS - 1)) {
            e = &cache[at];
            if (!e->used) break;
            if (e->len == n && memcmp(e->key, raw, n) == 0) {
                *found = e->decoded ? &e->d : NULL;
                return 0;
            }
        }
    }
    if (e != NULL && cache_used < DIGESTS / 4 * 3) {
        e->used = 1;
        e->len = (uint8_t)n;
        memcpy(e->key, raw, n);
        e->decoded = (uint8_t)decode_detail(handle, raw, n, address, &e->d);
        cache_used++;
        *found = e->decoded ? &e->d : NULL;
        return 0;
    }
    Digest *spare = spare_digest(f);
    if (spare == NULL) return -1;
    *found = decode_detail(handle, raw, n, address, spare) ? spare : NULL;
    return 0;
}

/* ---- the domain (stackstate.py) ---- */

static i128 sat(i128 v) { return v < -INF ? -INF : v > INF ? INF : v; }

static Val val(i128 epoch, i128 lo, i128 hi) {
    Val v = {epoch, lo, hi};
    return v;
}

static Val vadd(Val v, i128 k) { return val(v.epoch, sat(v.lo + k), sat(v.hi + k)); }

static int veq(const Val *a, const Val *b) {
    return a->epoch == b->epoch && a->lo == b->lo && a->hi == b->hi;
}

static void state_init(State *s, i128 epoch) {
    memset(s, 0, sizeof *s);
    s->rsp = val(epoch, 0, 0);
    s->alloca = NONE;
}

static int state_eq(const State *a, const State *b) {
    if (!veq(&a->rsp, &b->rsp) || a->has != b->has || a->alloca != b->alloca ||
        a->has_origin != b->has_origin)
        return 0;
    for (int r = 0; r < NREG; r++) {
        if ((a->has & BIT(r)) && !veq(&a->regs[r], &b->regs[r])) return 0;
        if ((a->has_origin & BIT(r)) && a->origin[r] != b->origin[r]) return 0;
    }
    return 1;
}

/* State.regs.get */
static const Val *rget(const State *s, int reg) {
    return reg >= 0 && (s->has & BIT(reg)) ? &s->regs[reg] : NULL;
}

/* State.get */
static const Val *sget(const State *s, int reg) { return reg == RSP ? &s->rsp : rget(s, reg); }

/* State.set; `v` NULL is None. */
static void sset(State *s, int reg, const Val *v, i128 fresh) {
    Val copy = v != NULL ? *v : val(0, 0, 0);
    s->has_origin &= ~BIT(reg);
    if (reg == RSP) {
        s->rsp = v != NULL && copy.epoch != CONST ? copy : val(fresh, 0, 0);
        s->alloca = NONE;
    } else if (v == NULL) {
        s->has &= ~BIT(reg);
    } else {
        s->regs[reg] = copy;
        s->has |= BIT(reg);
    }
    if (reg == s->alloca) s->alloca = NONE;
}

static i128 index_floor(const State *st, int index, int64_t scale) {
    if (index == NONE) return 0;
    const Val *v = rget(st, index);
    if (v == NULL || v->epoch != CONST || v->lo <= -INF) return 0;
    return (i128)scale * v->lo;
}

/* judge: 0 not below, 1 below by `*out`, 2 unknown. */
static int judge(const Op *op, const State *st, i128 *out) {
    int base = op->base, index = op->idx;
    i128 disp = op->disp;
    const Val *v = base != NONE ? rget(st, base) : NULL;
    if (base != RSP && (v == NULL || v->epoch == CONST) && index != NONE && op->scale == 1) {
        const Val *iv = sget(st, index);
        if (iv != NULL && iv->epoch != CONST) {
            int t = base;
            base = index;
            index = t;
            v = iv;
        }
    }
    if (base == NONE) return 0;
    if (index != NONE && index == st->alloca && base == RSP) return 0;
    disp += index_floor(st, index, op->scale);
    if (base == RSP) {
        if (disp < 0) {
            *out = disp;
            return 1;
        }
        return 0;
    }
    if (v == NULL || v->epoch == CONST) return 0;
    if (v->epoch != st->rsp.epoch) return 2;
    i128 lo = v->lo - st->rsp.hi + disp, hi = v->hi - st->rsp.lo + disp;
    if (lo >= 0) return 0;
    if (hi < 0) {
        *out = hi;
        return 1;
    }
    return 2;
}

static int writes(const Digest *d, int index) {
    if ((d->ops[index].access & WRITE) || in_set(stores, d->id)) return 1;
    return d->nops >= 2 && index == d->nops - 1 && !in_set(compares, d->id);
}

static int is_fence(const Digest *d) {
    if (!d->lock || (d->id != ids[I_OR] && d->id != ids[I_ADD])) return 0;
    for (int i = 0; i < d->nops; i++)
        if (d->ops[i].type == OP_IMM && d->ops[i].imm == 0) return 1;
    return 0;
}

static Val join_val(const Val *a, const Val *b, Py_ssize_t where, int widen) {
    if (a->epoch != b->epoch) return val(-JOINED - where, 0, 0);
    i128 lo = a->lo < b->lo ? a->lo : b->lo, hi = a->hi > b->hi ? a->hi : b->hi;
    if (widen) {
        if (lo < a->lo) lo = -INF;
        if (hi > a->hi) hi = INF;
    }
    return val(a->epoch, lo, hi);
}

static void join(const State *a, const State *b, Py_ssize_t where, int widen, State *out) {
    State o;
    memset(&o, 0, sizeof o);
    o.rsp = join_val(&a->rsp, &b->rsp, where, widen);
    for (int r = 0; r < NREG; r++) {
        if ((a->has & BIT(r)) && (b->has & BIT(r)) && b->regs[r].epoch == a->regs[r].epoch) {
            o.regs[r] = join_val(&a->regs[r], &b->regs[r], where, widen);
            o.has |= BIT(r);
        }
    }
    o.alloca = a->alloca == b->alloca ? a->alloca : NONE;
    for (int r = 0; r < NREG; r++) {
        int both = (a->has_origin & BIT(r)) && (b->has_origin & BIT(r));
        if (both && a->origin[r] == b->origin[r] && (o.has & BIT(r))) {
            o.origin[r] = a->origin[r];
            o.has_origin |= BIT(r);
        }
    }
    *out = o;
}

static int reg64(const Op *op) { return op != NULL && op->type == OP_REG && op->size == 8 ? op->reg : NONE; }

static int reg32(const Op *op) { return op != NULL && op->type == OP_REG && op->size == 4 ? op->reg : NONE; }

/* _fits: a value written to a 32-bit register stays what it was (zero extension). */
static int fits(const Op *op, const Val *v) {
    if (op->size == 8) return 1;
    return v->epoch == CONST && v->lo >= 0 && v->hi < ((i128)1 << 31);
}

static int transfer_const(unsigned iid, const Op *src, const Op *dst, State *st, i128 fresh) {
    int d = reg32(dst);
    if (d == NONE) {
        if (iid == ids[I_MOV] && src->type == OP_IMM && dst->type == OP_REG && dst->size == 8) {
            Val v = val(CONST, src->imm, src->imm);
            sset(st, dst->reg != NONE ? dst->reg : EMPTY, &v, fresh);
            return 1;
        }
        return 0;
    }
    if (iid == ids[I_MOV] && src->type == OP_IMM) {
        i128 value = (i128)(src->imm & 0xFFFFFFFFLL);
        Val v = val(CONST, value, value);
        sset(st, d, &v, fresh);
        return 1;
    }
    if (iid == ids[I_XOR] && src->type == OP_REG && src->reg == d) {
        Val v = val(CONST, 0, 0);
        sset(st, d, &v, fresh);
        return 1;
    }
    if (iid == ids[I_MOV] && src->type == OP_REG && src->reg != NONE) {
        const Val *v = sget(st, src->reg);
        sset(st, d, v != NULL && fits(dst, v) ? v : NULL, fresh);
        return 1;
    }
    const Val *cur = sget(st, d);
    if ((iid == ids[I_ADD] || iid == ids[I_SUB]) && src->type == OP_IMM && cur != NULL) {
        Val v = vadd(*cur, iid == ids[I_ADD] ? (i128)src->imm : -(i128)src->imm);
        sset(st, d, fits(dst, &v) ? &v : NULL, fresh);
        return 1;
    }
    sset(st, d, NULL, fresh);
    return 1;
}

/* stackstate._operands: (source, destination), the destination being the written operand. */
static int operands(const Digest *dg, const Op **src, const Op **dst) {
    if (dg->nops != 2) return 0;
    const Op *a = &dg->ops[0], *b = &dg->ops[1];
    if ((b->access & WRITE) && !(a->access & WRITE)) {
        *src = a;
        *dst = b;
        return 1;
    }
    if ((a->access & WRITE) && !(b->access & WRITE)) {
        *src = b;
        *dst = a;
        return 1;
    }
    return 0;
}

static int transfer_arith(const Digest *dg, State *st, i128 fresh) {
    unsigned iid = dg->id;
    if (iid == ids[I_XCHG] && dg->nops == 2) {
        int a = reg64(&dg->ops[0]), b = reg64(&dg->ops[1]);
        if (a != NONE && b != NONE) {
            const Val *pa = sget(st, a), *pb = sget(st, b);
            Val va = pa != NULL ? *pa : val(0, 0, 0), vb = pb != NULL ? *pb : val(0, 0, 0);
            int has_a = pa != NULL, has_b = pb != NULL;
            sset(st, a, has_b ? &vb : NULL, fresh);
            sset(st, b, has_a ? &va : NULL, fresh);
            return 1;
        }
        return 0;
    }
    if ((iid == ids[I_INC] || iid == ids[I_DEC]) && dg->nops == 1) {
        int r = reg64(&dg->ops[0]);
        if (r == NONE) r = reg32(&dg->ops[0]);
        const Val *cur = r != NONE ? sget(st, r) : NULL;
        if (r == NONE || cur == NULL) return 0;
        Val v = vadd(*cur, iid == ids[I_INC] ? 1 : -1);
        sset(st, r, fits(&dg->ops[0], &v) ? &v : NULL, fresh);
        return 1;
    }
    const Op *src = NULL, *dst = NULL;
    if (!operands(dg, &src, &dst)) return 0;
    if (transfer_const(iid, src, dst, st, fresh)) return 1;
    int d = reg64(dst);
    if (d == NONE) return 0;
    const Val *pcur = sget(st, d);
    int has_cur = pcur != NULL;
    Val cur = has_cur ? *pcur : val(0, 0, 0);
    if (iid == ids[I_MOV]) {
        int s = reg64(src);
        sset(st, d, s != NONE ? sget(st, s) : NULL, fresh);
        if (s != NONE && (st->has_origin & BIT(s))) {
            st->origin[d] = st->origin[s];
            st->has_origin |= BIT(d);
        }
        return 1;
    }
    if (iid == ids[I_LEA]) {
        int base = src->base;
        const Val *bval = base != NONE ? sget(st, base) : NULL;
        Val v;
        int has_v = bval != NULL && src->idx == NONE;
        if (has_v) v = vadd(*bval, src->disp);
        sset(st, d, has_v ? &v : NULL, fresh);
        if (has_v && v.epoch != CONST && d != RSP) {
            st->origin[d] = (uint64_t)(fresh - 1);
            st->has_origin |= BIT(d);
        }
        return 1;
    }
    if ((iid == ids[I_SUB] || iid == ids[I_ADD]) && has_cur) {
        int sign = iid == ids[I_SUB] ? -1 : 1;
        if (src->type == OP_IMM) {
            Val v = vadd(cur, sign * (i128)src->imm);
            int alloca = st->alloca;
            sset(st, d, &v, fresh);
            st->alloca = d != RSP ? alloca : NONE;
            return 1;
        }
        int s = reg64(src);
        const Val *sval = s != NONE ? sget(st, s) : NULL;
        if (d == RSP && s != NONE && (sval == NULL || sval->epoch == CONST)) {
            /* alloca: %rsp moves down (sub) or up (add) by a non-negative amount, known or not */
            i128 lo = 0, hi = INF;
            if (sval != NULL && sval->lo >= 0) {
                lo = sval->lo;
                hi = sval->hi;
            }
            if (sign < 0)
                st->rsp = val(cur.epoch, sat(cur.lo - hi), sat(cur.hi - lo));
            else
                st->rsp = val(cur.epoch, sat(cur.lo + lo), sat(cur.hi + hi));
            st->alloca = sign < 0 ? s : NONE;
            return 1;
        }
        sset(st, d, NULL, fresh);
        return 1;
    }
    if (iid == ids[I_AND] && has_cur && src->type == OP_IMM) {
        i128 mask = src->imm;
        if (mask < 0 && ((-mask) & (-mask - 1)) == 0) {
            /* aligning down by 2^k lowers the value by at most 2^k - 1 */
            int alloca = st->alloca;
            Val v = val(cur.epoch, sat(cur.lo + mask + 1), cur.hi);
            sset(st, d, &v, fresh);
            st->alloca = d != RSP ? alloca : NONE;
            return 1;
        }
    }
    return 0;
}

static void clobber(const Digest *dg, State *st, i128 fresh) {
    for (int r = 0; r < NREG; r++) {
        if (!(dg->written & BIT(r))) continue;
        if (r == st->alloca) st->alloca = NONE;
        if (r == RSP)
            sset(st, RSP, NULL, fresh);
        else
            st->has &= ~BIT(r);
    }
}

static void transfer(const Digest *dg, State *st, i128 fresh) {
    unsigned iid = dg->id;
    const Op *ops = dg->ops;
    if (iid == ids[I_PUSH] || iid == ids[I_PUSHFQ] || iid == ids[I_PUSHF]) {
        int size = dg->nops && ops[0].type != OP_IMM ? ops[0].size : 8;
        st->rsp = vadd(st->rsp, -(size == 2 ? 2 : 8));
        return;
    }
    if (iid == ids[I_POP] || iid == ids[I_POPFQ] || iid == ids[I_POPF]) {
        int size = dg->nops ? ops[0].size : 8;
        int dest = dg->nops && ops[0].type == OP_REG ? ops[0].reg : NONE;
        st->rsp = vadd(st->rsp, size == 2 ? 2 : 8);
        if (dest != NONE) sset(st, dest, NULL, fresh);
        return;
    }
    if (iid == ids[I_CALL]) {
        st->has &= ~caller_saved;
        return;
    }
    if (iid == ids[I_LEAVE]) {
        const Val *rbp = rget(st, RBP);
        Val v;
        int has = rbp != NULL;
        if (has) v = vadd(*rbp, 8);
        st->has &= ~BIT(RBP);
        sset(st, RSP, has ? &v : NULL, fresh);
        return;
    }
    if (iid == ids[I_ENTER]) {
        st->rsp = vadd(st->rsp, -8);
        st->regs[RBP] = st->rsp;
        st->has |= BIT(RBP);
        st->rsp = vadd(st->rsp, dg->nops ? -(i128)ops[0].imm : 0);
        return;
    }
    if (transfer_arith(dg, st, fresh)) return;
    clobber(dg, st, fresh);
}

/* ---- the dataflow (stack._Analyser) ---- */

static int push_access(Accesses *found, uint64_t address, i128 offset, int kind, int size, int benign) {
    if (found->n == found->cap) {
        size_t cap = found->cap ? found->cap * 2 : 8;
        Access *items = realloc(found->items, cap * sizeof *items);
        if (items == NULL) return -1;
        found->items = items;
        found->cap = cap;
    }
    Access a = {address, offset, kind, size, benign, 0};
    found->items[found->n++] = a;
    return 0;
}

/* _address_of: the lea that made the stack pointer an offending access went through. */
static int address_of(const Op *op, const State *st, Accesses *found) {
    int regs[2] = {op->base, op->idx};
    for (int i = 0; i < 2; i++) {
        int reg = regs[i];
        if (reg == NONE || !(st->has_origin & BIT(reg))) continue;
        const Val *v = rget(st, reg);
        if (v == NULL || v->epoch != st->rsp.epoch) continue;
        i128 offset = v->hi - st->rsp.lo;
        if (offset < 0 && push_access(found, st->origin[reg], offset, 2, 0, 0) < 0) return -1;
    }
    return 0;
}

/* _judge_all: the number of unknown accesses, or -1 when out of memory. */
static long judge_all(const Digest *dg, uint64_t address, const State *st, Accesses *found) {
    long unknown = 0;
    for (int i = 0; i < dg->nops; i++) {
        const Op *op = &dg->ops[i];
        if (op->type != OP_MEM) continue;
        i128 offset = 0;
        int verdict = judge(op, st, &offset);
        if (verdict == 2) {
            unknown++;
        } else if (verdict == 1) {
            if (push_access(found, address, offset, writes(dg, i), op->size, is_fence(dg)) < 0) return -1;
            if (address_of(op, st, found) < 0) return -1;
        }
    }
    return unknown;
}


static void heap_push(Flow *f, Py_ssize_t b) {
    Py_ssize_t i = f->nheap++;
    f->heap[i] = b;
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (f->rank[f->heap[parent]] <= f->rank[f->heap[i]]) break;
        Py_ssize_t t = f->heap[parent];
        f->heap[parent] = f->heap[i];
        f->heap[i] = t;
        i = parent;
    }
}

static Py_ssize_t heap_pop(Flow *f) {
    Py_ssize_t top = f->heap[0];
    f->heap[0] = f->heap[--f->nheap];
    Py_ssize_t i = 0;
    for (;;) {
        Py_ssize_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < f->nheap && f->rank[f->heap[l]] < f->rank[f->heap[m]]) m = l;
        if (r < f->nheap && f->rank[f->heap[r]] < f->rank[f->heap[m]]) m = r;
        if (m == i) break;
        Py_ssize_t t = f->heap[m];
        f->heap[m] = f->heap[i];
        f->heap[i] = t;
        i = m;
    }
    return top;
}

/* _order: reverse postorder from block 0; blocks it does not reach come after, by index. */
static int order(Flow *f) {
    Py_ssize_t n = f->n, npost = 0, depth = 0;
    Py_ssize_t *post = malloc(n * sizeof *post), *stack = malloc(n * sizeof *stack);
    Py_ssize_t *pos = malloc(n * sizeof *pos);
    uint8_t *seen = calloc(n, 1);
    int ok = post != NULL && stack != NULL && pos != NULL && seen != NULL;
    if (ok) {
        seen[0] = 1;
        stack[depth] = 0;
        pos[depth++] = 0;
        while (depth) {
            Block *b = &f->blocks[stack[depth - 1]];
            Py_ssize_t next = -1;
            while (pos[depth - 1] < b->nsuccs) {
                Py_ssize_t s = b->succs[pos[depth - 1]++];
                if (!seen[s]) {
                    next = s;
                    break;
                }
            }
            if (next < 0) {
                post[npost++] = stack[--depth];
            } else {
                seen[next] = 1;
                stack[depth] = next;
                pos[depth++] = 0;
            }
        }
        for (Py_ssize_t b = 0; b < n; b++) f->rank[b] = npost + b;
        for (Py_ssize_t i = 0; i < npost; i++) f->rank[post[npost - 1 - i]] = i;
    }
    free(post);
    free(stack);
    free(pos);
    free(seen);
    return ok ? 0 : -1;
}

static int merge_into(Flow *f, Py_ssize_t b, const State *incoming) {
    if (!f->present[b]) {
        f->state_in[b] = *incoming;
        f->present[b] = 1;
        return 1;
    }
    f->visits[b]++;
    State merged;
    join(&f->state_in[b], incoming, b, f->visits[b] > WIDEN_AFTER, &merged);
    if (state_eq(&merged, &f->state_in[b])) return 0;
    f->state_in[b] = merged;
    return 1;
}

static long run_block(const Block *block, State *st, Accesses *found) {
    long unknown = 0;
    for (size_t i = 0; i < block->nsteps; i++) {
        const Step *step = &block->steps[i];
        if (step->judged) {
            long u = judge_all(step->d, step->address, st, found);
            if (u < 0) return -1;
            unknown += u;
        }
        transfer(step->d, st, (i128)step->address + 1);
    }
    return unknown;
}

static void reach(Flow *f, Py_ssize_t b) {
    if (!f->reached[b]) {
        f->reached[b] = 1;
        f->reached_list[f->nreached++] = b;
    }
}

/* _flow: the blocks reachable from `start` (but not frozen) to a fixed point; they become frozen. */
static int flow(Flow *f, Py_ssize_t start, const State *seed) {
    f->nreached = 0;
    f->nheap = 0;
    heap_push(f, start);
    f->queued[start] = 1;
    reach(f, start);
    merge_into(f, start, seed);
    while (f->nheap) {
        Py_ssize_t b = heap_pop(f);
        f->queued[b] = 0;
        State out = f->state_in[b];
        Block *block = &f->blocks[b];
        f->judged[b].n = 0;
        long unknown = run_block(block, &out, &f->judged[b]);
        if (unknown < 0) return -1;
        f->unknown[b] = unknown;
        f->was_judged[b] = 1;
        if (block->indirect) {
            if (f->has_indirect) {
                State joined;
                join(&f->indirect, &out, -1, 1, &joined);
                f->indirect = joined;
            } else {
                f->indirect = out;
                f->has_indirect = 1;
            }
        }
        for (Py_ssize_t i = 0; i < block->nsuccs; i++) {
            Py_ssize_t succ = block->succs[i];
            if (!f->frozen[succ] && merge_into(f, succ, &out) && !f->queued[succ]) {
                heap_push(f, succ);
                f->queued[succ] = 1;
                reach(f, succ);
            }
        }
    }
    for (Py_ssize_t i = 0; i < f->nreached; i++) {
        f->frozen[f->reached_list[i]] = 1;
        f->reached[f->reached_list[i]] = 0;
    }
    return 0;
}

int rzc_run(Flow *f) {
    State seed;
    state_init(&seed, 0);
    if (order(f) < 0 || flow(f, 0, &seed) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t todo = 0; todo < f->n; todo++) {
        if (f->present[todo]) continue;
        /* jump-table targets get the state at the indirect jump; code nothing reaches gets a fresh
         * %rsp base, so only %rsp-relative verdicts hold */
        if (f->has_indirect)
            seed = f->indirect;
        else
            state_init(&seed, -2 - (i128)todo);
        if (flow(f, todo, &seed) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* ---- Python's view ---- */

static PyObject *long_from_i128(i128 v) {
    if (v >= INT64_MIN && v <= INT64_MAX) return PyLong_FromLongLong((long long)v);
    /* Beyond 64 bits. No real code gets here (it takes some 2^30 instructions that add a 32-bit
     * immediate to one register), but a value is never truncated. */
    char text[48], *p = text + sizeof text - 1;
    *p = '\0';
    int negative = v < 0;
    unsigned __int128 u = negative ? -(unsigned __int128)v : (unsigned __int128)v;
    do {
        *--p = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (negative) *--p = '-';
    return PyLong_FromString(p, NULL, 10);
}

static int by_address(const void *x, const void *y) {
    const Access *a = x, *b = y;
    if (a->address != b->address) return a->address < b->address ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Python's str.isspace() for an ASCII character, as str.strip() uses it. */
static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

Py_ssize_t rzc_index_of_address(const cs_insn *insns, size_t count, uint64_t address) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (insns[mid].address < address) lo = mid + 1;
        else hi = mid;
    }
    return lo < count && insns[lo].address == address ? (Py_ssize_t)lo : -1;
}

/* _text_at: f"{mnemonic} {op_str}".strip() of the instruction at `address`, "" when there is none. */
static PyObject *text_at(const cs_insn *insns, size_t count, uint64_t address) {
    Py_ssize_t lo = rzc_index_of_address(insns, count, address);
    if (lo < 0) return PyUnicode_FromString("");
    char text[sizeof insns->mnemonic + 1 + sizeof insns->op_str + 1];
    int n = snprintf(text, sizeof text, "%.*s %.*s", (int)sizeof insns->mnemonic, insns[lo].mnemonic,
                     (int)sizeof insns->op_str, insns[lo].op_str);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof text) n = (int)sizeof text - 1;
    int start = 0;
    while (start < n && is_space(text[start])) start++;
    while (n > start && is_space(text[n - 1])) n--;
    return PyUnicode_DecodeASCII(text + start, n - start, NULL);
}

PyObject *rzc_verdicts(Flow *f, const cs_insn *insns, size_t count) {
    Accesses all = {NULL, 0, 0};
    long unknown = 0;
    PyObject *list = NULL;
    for (Py_ssize_t b = 0; b < f->n; b++) {
        if (!f->was_judged[b]) continue;
        unknown += f->unknown[b];
        for (size_t i = 0; i < f->judged[b].n; i++) {
            Access *a = &f->judged[b].items[i];
            if (a->kind == 2) {
                int repeat = 0;
                for (size_t j = 0; j < all.n && !repeat; j++)
                    repeat = all.items[j].kind == 2 && all.items[j].address == a->address;
                if (repeat) continue;
            }
            if (push_access(&all, a->address, a->offset, a->kind, a->size, a->benign) < 0) goto fail;
            all.items[all.n - 1].seq = all.n;
        }
    }
    if (all.n > 1) qsort(all.items, all.n, sizeof *all.items, by_address);
    list = PyList_New((Py_ssize_t)all.n);
    for (size_t i = 0; list != NULL && i < all.n; i++) {
        Access *a = &all.items[i];
        PyObject *offset = long_from_i128(a->offset), *item = NULL;
        if (offset != NULL && insns == NULL) {
            unsigned long long address = a->address;
            item = Py_BuildValue("(KiNii)", address, a->kind, offset, a->size, a->benign);
        } else if (offset != NULL) {
            PyObject *text = text_at(insns, count, a->address);
            unsigned long long address = a->address;
            if (text == NULL) Py_DECREF(offset);
            else item = Py_BuildValue("(KNiNii)", address, text, a->kind, offset, a->size, a->benign);
        }
        if (item == NULL) Py_CLEAR(list);
        else PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    free(all.items);
    if (list == NULL) return NULL;
    return Py_BuildValue("(Nl)", list, unknown);
fail:
    free(all.items);
    return PyErr_NoMemory();
}

static int read_index(PyObject *item, Py_ssize_t *out, Py_ssize_t limit) {
    Py_ssize_t v = PyLong_AsSsize_t(item);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0 || v > limit) {
        PyErr_SetString(PyExc_ValueError, "block index out of range");
        return -1;
    }
    *out = v;
    return 0;
}

int rzc_build_steps(Flow *f, csh handle, const uint8_t *code, Py_ssize_t length, uint64_t base,
                    const Place *places, const uint8_t *relevant) {
    if (cache_used >= DIGESTS / 2) { /* between functions: no step points into it */
        memset(cache, 0, sizeof cache);
        cache_used = 0;
    }
    for (Py_ssize_t b = 0; b < f->n; b++) {
        Block *block = &f->blocks[b];
        size_t count = 0;
        for (Py_ssize_t i = block->start; i < block->end; i++) count += relevant[i] != 0;
        block->steps = count ? malloc(count * sizeof *block->steps) : NULL;
        if (count && block->steps == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = block->start; i < block->end; i++) {
            if (!relevant[i]) continue;
            uint64_t address = places[i].address;
            size_t n;
            const uint8_t *raw = rzc_bytes_at(code, length, base, address, places[i].size, &n);
            Step *step = &block->steps[block->nsteps];
            if (digest_of(f, handle, raw, n, address, &step->d) < 0) return -1;
            if (step->d == NULL) continue;
            step->address = address;
            step->judged = 0;
            if (!in_set(not_accesses, step->d->id))
                for (int k = 0; k < step->d->nops; k++) step->judged |= step->d->ops[k].type == OP_MEM;
            block->nsteps++;
        }
    }
    return 0;
}

const uint8_t *rzc_bytes_at(const uint8_t *code, Py_ssize_t length, uint64_t base, uint64_t address,
                            size_t size, size_t *n) {
    Py_ssize_t off = (Py_ssize_t)(address - base), end = off + (Py_ssize_t)size;
    if (off < 0 || off > length) off = length;
    if (end > length) end = length;
    if (end < off) end = off;
    *n = (size_t)(end - off);
    return code + off;
}

/* The places of a lite list's instructions. */
static Place *read_places(PyObject *lite) {
    Py_ssize_t n = PyList_GET_SIZE(lite);
    Place *places = malloc((n ? n : 1) * sizeof *places);
    if (places == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *insn = PyList_GET_ITEM(lite, i);
        if (!PyTuple_Check(insn) || PyTuple_GET_SIZE(insn) < 2) {
            PyErr_SetString(PyExc_TypeError, "lite entries are (address, size, mnemonic, op_str)");
            free(places);
            return NULL;
        }
        places[i].address = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(insn, 0));
        long size = PyLong_AsLong(PyTuple_GET_ITEM(insn, 1));
        if (PyErr_Occurred()) {
            free(places);
            return NULL;
        }
        places[i].size = size < 0 ? 0 : size > 0xFFFF ? 0xFFFF : (uint16_t)size;
    }
    return places;
}

static int read_blocks(Flow *f, PyObject *blocks, Py_ssize_t ninsns) {
    for (Py_ssize_t b = 0; b < f->n; b++) {
        PyObject *spec = PyList_GET_ITEM(blocks, b);
        Block *block = &f->blocks[b];
        PyObject *succs;
        if (!PyTuple_Check(spec)) {
            PyErr_SetString(PyExc_TypeError, "blocks are (start, end, succs, indirect)");
            return -1;
        }
        if (!PyArg_ParseTuple(spec, "nnOp", &block->start, &block->end, &succs, &block->indirect)) return -1;
        if (block->start < 0 || block->end > ninsns || block->start > block->end) {
            PyErr_SetString(PyExc_ValueError, "block bounds out of range");
            return -1;
        }
        PyObject *fast = PySequence_Fast(succs, "succs must be a sequence");
        if (fast == NULL) return -1;
        block->nsuccs = PySequence_Fast_GET_SIZE(fast);
        block->succs = malloc((block->nsuccs ? block->nsuccs : 1) * sizeof *block->succs);
        if (block->succs == NULL) {
            Py_DECREF(fast);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < block->nsuccs; i++) {
            if (read_index(PySequence_Fast_GET_ITEM(fast, i), &block->succs[i], f->n - 1) < 0) {
                Py_DECREF(fast);
                return -1;
            }
        }
        Py_DECREF(fast);
    }
    return 0;
}

int rzc_flow_alloc(Flow *f, Py_ssize_t n) {
    f->n = n;
    f->blocks = calloc(n, sizeof *f->blocks);
    f->state_in = malloc(n * sizeof *f->state_in);
    f->present = calloc(n, 1);
    f->judged = calloc(n, sizeof *f->judged);
    f->unknown = calloc(n, sizeof *f->unknown);
    f->was_judged = calloc(n, 1);
    f->visits = calloc(n, sizeof *f->visits);
    f->rank = malloc(n * sizeof *f->rank);
    f->frozen = calloc(n, 1);
    f->queued = calloc(n, 1);
    f->reached = calloc(n, 1);
    f->heap = malloc(n * sizeof *f->heap);
    f->reached_list = malloc(n * sizeof *f->reached_list);
    if (!f->blocks || !f->state_in || !f->present || !f->judged || !f->unknown || !f->was_judged ||
        !f->visits || !f->rank || !f->frozen || !f->queued || !f->reached || !f->heap || !f->reached_list) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

void rzc_flow_free(Flow *f) {
    while (f->spare != NULL) {
        Spare *next = f->spare->next;
        free(f->spare);
        f->spare = next;
    }
    if (f->blocks != NULL)
        for (Py_ssize_t b = 0; b < f->n; b++) {
            free(f->blocks[b].succs);
            free(f->blocks[b].steps);
        }
    if (f->judged != NULL)
        for (Py_ssize_t b = 0; b < f->n; b++) free(f->judged[b].items);
    free(f->blocks);
    free(f->state_in);
    free(f->present);
    free(f->judged);
    free(f->unknown);
    free(f->was_judged);
    free(f->visits);
    free(f->rank);
    free(f->frozen);
    free(f->queued);
    free(f->reached);
    free(f->heap);
    free(f->reached_list);
}

/* analyse(handle, code, base, lite, blocks, relevant) -> (accesses, unknown): what
 * stack._Analyser.run() gives, each access as (address, kind, rsp offset, size, benign) with kind
 * 0 read, 1 write, 2 address. `blocks` are (start, end, succs, indirect), `relevant[i]` says whether
 * instruction i of `lite` is stepped. `handle` is decode.decoder()'s: AT&T, detail on, skipdata. */
PyObject *rzc_analyse(PyObject *self, PyObject *args) {
    unsigned long long handle, base;
    Py_buffer code, relevant;
    PyObject *lite, *blocks, *result = NULL;
    if (!rzc_configured() || !rzc_flow_ready()) return NULL;
    if (!PyArg_ParseTuple(args, "Ky*KO!O!y*", &handle, &code, &base, &PyList_Type, &lite, &PyList_Type,
                          &blocks, &relevant))
        return NULL;
    Flow f;
    memset(&f, 0, sizeof f);
    Place *places = NULL;
    Py_ssize_t n = PyList_GET_SIZE(blocks), ninsns = PyList_GET_SIZE(lite);
    if (relevant.len != ninsns) {
        PyErr_SetString(PyExc_ValueError, "relevant must have one byte per instruction");
        goto done;
    }
    if (n == 0) {
        result = Py_BuildValue("([]i)", 0);
        goto done;
    }
    if (rzc_flow_alloc(&f, n) < 0) goto done;
    if (read_blocks(&f, blocks, ninsns) < 0) goto done;
    places = read_places(lite);
    if (places == NULL) goto done;
    if (rzc_build_steps(&f, (csh)handle, code.buf, code.len, base, places, relevant.buf) < 0) goto done;
    if (rzc_run(&f) < 0) goto done;
    result = rzc_verdicts(&f, NULL, 0);
done:
    rzc_flow_free(&f);
    free(places);
    PyBuffer_Release(&code);
    PyBuffer_Release(&relevant);
    return result;
}
