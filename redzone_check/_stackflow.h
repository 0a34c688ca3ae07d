/* What _stackflow.c (the domain and the dataflow) and _function.c (one function, from its bytes)
 * share: the records of the analysis and the steps of a run. */
#ifndef REDZONE_CHECK_STACKFLOW_H
#define REDZONE_CHECK_STACKFLOW_H

#include "_capstone.h"

#include <stdint.h>

typedef __int128 i128;

#define MAXOPS 8
#define NREG 17 /* the sixteen general-purpose registers of decode.GPRS, and "" (see _stackflow.c) */
#define BIT(r) (1u << (r))

/* ---- records ---- */

typedef struct {
    uint8_t type, size, access;
    int8_t reg, base, idx; /* indices of decode.GPRS, or NONE */
    int64_t imm, disp, scale;
} Op;

typedef struct {
    unsigned id;
    uint8_t lock, nops;
    uint32_t written; /* registers written, explicitly or not, by bit */
    Op ops[MAXOPS];
} Digest;

typedef struct {
    i128 epoch, lo, hi;
} Val;

typedef struct {
    Val rsp;
    uint32_t has; /* which regs[] hold a value (never RSP: %rsp is `rsp`) */
    Val regs[NREG];
    int alloca;          /* register just subtracted from %rsp, or NONE */
    uint32_t has_origin; /* which origin[] are set */
    uint64_t origin[NREG]; /* register -> the address of the lea that made it */
} State;

typedef struct {
    uint64_t address;
    i128 offset;
    int kind; /* 0 read, 1 write, 2 address */
    int size, benign;
    size_t seq; /* for a stable sort */
} Access;

typedef struct {
    Access *items;
    size_t n, cap;
} Accesses;

typedef struct {
    uint64_t address;
    uint8_t judged;
    const Digest *d; /* in the cache of decodings, which is emptied only between functions, or spare */
} Step;

/* Decodings the cache could not take (too long, or the cache too full), kept for one function. */
typedef struct Spare {
    struct Spare *next;
    size_t used;
    Digest digests[64];
} Spare;

typedef struct {
    Py_ssize_t start, end, nsuccs;
    Py_ssize_t *succs;
    int indirect;
    Step *steps;
    size_t nsteps;
} Block;

typedef struct {
    Block *blocks;
    Py_ssize_t n;
    State *state_in;
    uint8_t *present; /* state_in[b] is not None */
    Accesses *judged; /* what the last visit of each block found */
    long *unknown;
    uint8_t *was_judged;
    long *visits;
    State indirect;
    int has_indirect;
    Py_ssize_t *rank;
    uint8_t *frozen, *queued, *reached;
    Py_ssize_t *heap, nheap;
    Py_ssize_t *reached_list, nreached;
    Spare *spare;
} Flow;

/* Where each instruction is: its address and size. */
typedef struct {
    uint64_t address;
    uint16_t size;
} Place;

/* Whether flow_setup() ran; sets a Python error when not. */
int rzc_flow_ready(void);
/* Empties the table of facts by text (_function.c): flow_setup() does, as facts may change with it. */
void rzc_forget_facts(void);
/* decode.GPRS index of %rsp, as flow_setup() gave it. */
int rzc_rsp(void);
/* The arrays of a flow over `n` blocks; -1 (and a Python error) when out of memory. */
int rzc_flow_alloc(Flow *f, Py_ssize_t n);
void rzc_flow_free(Flow *f);
/* The steps of each block: its relevant instructions that capstone decodes (_Analyser._steps). */
int rzc_build_steps(Flow *f, csh handle, const uint8_t *code, Py_ssize_t length, uint64_t base,
                    const Place *places, const uint8_t *relevant);
/* _Analyser.run() over built blocks and steps; -1 (and a Python error) when out of memory. */
int rzc_run(Flow *f);
/* code[address - base : address - base + size], as Python slices it; its length goes to `n`. */
const uint8_t *rzc_bytes_at(const uint8_t *code, Py_ssize_t length, uint64_t base, uint64_t address,
                            size_t size, size_t *n);
/* The index of the instruction at `address` in `insns` (their addresses increase), or -1. */
Py_ssize_t rzc_index_of_address(const cs_insn *insns, size_t count, uint64_t address);
/* (accesses, unknown), each access (address, kind, rsp offset, size, benign), or with `insns`
 * (address, text, kind, rsp offset, size, benign), the text read off the instruction at `address`. */
PyObject *rzc_verdicts(Flow *f, const cs_insn *insns, size_t count);

#endif
