/* What the sources of the `_decoder` module share: capstone's functions, reached through the
 * function pointers of its ctypes binding (set by `configure()`), and the methods of `_stackflow.c`. */
#ifndef REDZONE_CHECK_CAPSTONE_H
#define REDZONE_CHECK_CAPSTONE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <capstone/capstone.h>

typedef size_t (*disasm_fn)(csh, const uint8_t *, size_t, uint64_t, size_t, cs_insn **);
typedef void (*free_fn)(cs_insn *, size_t);
typedef cs_err (*regs_access_fn)(csh, const cs_insn *, cs_regs, uint8_t *, cs_regs, uint8_t *);

extern disasm_fn rzc_disasm;
extern free_fn rzc_free;
extern regs_access_fn rzc_regs_access;

/* Whether configure() ran; sets a Python error when not. */
int rzc_configured(void);

/* Whether the prefilter's test `matters` keeps a function: 1, 0, or -1 with a Python error. */
int rzc_kept(const cs_insn *insns, size_t count, PyObject *matters);

PyObject *rzc_flow_setup(PyObject *self, PyObject *args);
PyObject *rzc_analyse(PyObject *self, PyObject *args);
PyObject *rzc_analyse_function(PyObject *self, PyObject *args);
PyObject *rzc_shape(PyObject *self, PyObject *args);

#endif
