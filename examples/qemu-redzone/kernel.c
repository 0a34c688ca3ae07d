/* A freestanding x86-64 kernel whose timer interrupt lands on the current stack. */
#include <stdint.h>

#ifndef ITERATIONS
#define ITERATIONS 200000
#endif
#ifndef TIMER_PERIOD_NS
#define TIMER_PERIOD_NS 9973 /* ~100 kHz; prime, so ticks drift across the loop instead of hitting one spot */
#endif

#define COM1 0x3F8
#define DEBUG_EXIT 0xF4
#define LAPIC 0xFEE00000UL
#define TIMER_VECTOR 32
#define SPURIOUS_VECTOR 0xFF

uint32_t checksum(const uint8_t *data, uint32_t len);
void timer_entry(void);
void fault_entry(void);

struct idt_gate {
    uint16_t offset_low, selector;
    uint8_t ist, type;
    uint16_t offset_mid;
    uint32_t offset_high, reserved;
} __attribute__((packed));

static struct idt_gate idt[256];
static uint8_t message[64];
volatile uint64_t ticks;
volatile uint64_t tick_noise[12];

static inline void outb(uint16_t port, uint8_t value)
{
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

static inline void lapic_write(uint32_t reg, uint32_t value)
{
    *(volatile uint32_t *)(LAPIC + reg) = value;
}

__attribute__((noinline)) static void serial_putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (uint8_t)c);
}

static void serial_puts(const char *s)
{
    while (*s)
        serial_putc(*s++);
}

__attribute__((noinline)) static void print_u64(const char *label, uint64_t value)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    serial_puts(label);
    while (n)
        serial_putc(digits[--n]);
    serial_putc('\n');
}

__attribute__((noreturn)) static void qemu_exit(uint8_t code)
{
    outb(DEBUG_EXIT, code); /* QEMU exits with status (code << 1) | 1 */
    for (;;)
        __asm__ volatile("cli; hlt");
}

static void set_gate(int vector, void (*handler)(void))
{
    uint64_t at = (uint64_t)handler;
    idt[vector] = (struct idt_gate){
        .offset_low = (uint16_t)at,
        .selector = 0x08,
        .ist = 0, /* no IST: the handler runs on whatever stack was interrupted */
        .type = 0x8E, /* present, DPL 0, 64-bit interrupt gate */
        .offset_mid = (uint16_t)(at >> 16),
        .offset_high = (uint32_t)(at >> 32),
    };
}

static void load_idt(void)
{
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr = {sizeof idt - 1, (uint64_t)idt};
    for (int v = 0; v < 32; v++)
        set_gate(v, fault_entry);
    set_gate(TIMER_VECTOR, timer_entry);
    set_gate(SPURIOUS_VECTOR, timer_entry);
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

static void start_timer(void)
{
    outb(0x21, 0xFF); /* mask the legacy PICs: the local APIC drives the timer */
    outb(0xA1, 0xFF);
    lapic_write(0xF0, 0x100 | SPURIOUS_VECTOR);   /* software enable */
    lapic_write(0x3E0, 0xB);                      /* divide by 1: one count per ns */
    lapic_write(0x320, 0x20000 | TIMER_VECTOR);   /* periodic */
    lapic_write(0x380, TIMER_PERIOD_NS);
}

/* Called from timer_entry. It fills a frame of its own below the interrupt frame,
 * as any real handler would, which is what overwrites a red zone. */
__attribute__((noinline)) static void stir(volatile uint64_t *scratch, uint64_t n)
{
    for (int i = 0; i < 12; i++)
        tick_noise[i] ^= scratch[i] + n;
}

void timer_tick(void)
{
    volatile uint64_t scratch[12];
    uint64_t n = ticks + 1;
    for (int i = 0; i < 12; i++)
        scratch[i] = n * 0x9E3779B97F4A7C15ULL + (uint64_t)i;
    stir(scratch, n);
    ticks = n;
    lapic_write(0xB0, 0); /* EOI */
}

void fault(const uint64_t *frame)
{
    serial_puts("unexpected exception\n");
    for (int i = 0; i < 4; i++)
        print_u64("  frame word: ", frame[i]);
    qemu_exit(0x7F);
}

void kmain(void)
{
    serial_puts("redzone demo: checksum loop with a timer interrupt on the current stack\n");
    for (uint32_t i = 0; i < sizeof message; i++)
        message[i] = (uint8_t)(i * 7 + 3);
    load_idt();

    uint32_t expected = checksum(message, sizeof message); /* interrupts still off */
    start_timer();
    __asm__ volatile("sti");

    uint64_t mismatches = 0;
    for (uint32_t i = 0; i < ITERATIONS; i++)
        if (checksum(message, sizeof message) != expected)
            mismatches++;

    __asm__ volatile("cli");
    print_u64("iterations: ", ITERATIONS);
    print_u64("timer interrupts: ", ticks);
    print_u64("mismatches: ", mismatches);
    qemu_exit(mismatches ? 1 : 0);
}
