/* Multiboot entry in 32-bit protected mode, identity-mapped long mode, interrupt stubs. */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, memory info */

    .section .multiboot, "a"
    .balign 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .section .bss
    .balign 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4 * 4096          /* 4 x 512 x 2 MiB: the first 4 GiB, local APIC included */
stack:  .skip 16384
stack_top:

    .section .rodata
    .balign 8
gdt:
    .quad 0
    .quad 0x00209A0000000000    /* 0x08: 64-bit code */
    .quad 0x0000920000000000    /* 0x10: data */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt

    .section .boot, "ax"
    .code32
    .globl _start
_start:
    cli
    mov $stack_top, %esp

    /* PML4[0] -> PDPT, PDPT[0..3] -> PD[0..3], each PD entry a 2 MiB page. */
    mov $pdpt + 3, %eax
    mov %eax, pml4
    mov $pd + 3, %eax
    xor %ecx, %ecx
1:  mov %eax, pdpt(, %ecx, 8)
    add $4096, %eax
    inc %ecx
    cmp $4, %ecx
    jne 1b
    mov $0x83, %eax             /* present, writable, 2 MiB */
    xor %ecx, %ecx
2:  mov %eax, pd(, %ecx, 8)
    movl $0, pd + 4(, %ecx, 8)
    add $0x200000, %eax
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    mov $pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $0xC0000080, %ecx       /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax        /* PG | PE */
    mov %eax, %cr0
    lgdt gdt_ptr
    /* A far return rather than `ljmp ptr16:32`, whose opcode does not exist in
     * 64-bit mode, so that this ELF64 decodes as x86-64 from end to end. */
    push $0x08
    push $long_mode
    lret

    .code64
long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $stack_top, %rsp
    call kmain
3:  hlt
    jmp 3b

    .text
/* The timer interrupt runs on the interrupted stack (IST 0): the CPU pushes its
 * frame just below the interrupted %rsp, then we push the scratch registers and
 * call C, exactly where a leaf function's red zone lives. */
    .globl timer_entry
    .type timer_entry, @function
timer_entry:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    call timer_tick
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq
    .size timer_entry, . - timer_entry

    .globl fault_entry
    .type fault_entry, @function
fault_entry:
    mov %rsp, %rdi
    and $-16, %rsp
    call fault
    .size fault_entry, . - fault_entry
    .section .note.GNU-stack, "", @progbits
