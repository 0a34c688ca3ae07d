#include <caml/mlvalues.h>
#include <caml/alloc.h>
#include <caml/memory.h>

long checksum_fold(long value); /* util.c, another member of the stubs archive */

/* A leaf whose volatile locals gcc -O2 keeps below %rsp, in the red zone. */
static __attribute__((noinline)) long helper_sum(long a, long b)
{
    volatile long x = a, y = b, z = a ^ b;
    return x + y + z;
}

intnat mystub(intnat a, intnat b) { return checksum_fold(helper_sum(a, b)); }

value mystub_byte(value a, value b) { return Val_long(mystub(Long_val(a), Long_val(b))); }

value mystub_alloc(value n)
{
    CAMLparam1(n);
    CAMLlocal1(r);
    r = caml_alloc(Long_val(n), 0);
    CAMLreturn(r);
}
