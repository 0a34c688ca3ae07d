#!/usr/bin/env bash
# Build the demo kernel with and without -mno-red-zone, boot both under QEMU (TCG,
# deterministic -icount), scan both with redzone-check and compare the two.
# Exit status: 0 when the checker's verdicts match what the kernels did, 1 when
# they do not, 2 when something could not be built or run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(mkdir -p "${BUILD:-$here/build}" && cd "${BUILD:-$here/build}" && pwd)"
iterations="${ITERATIONS:-200000}"
period="${TIMER_PERIOD_NS:-9973}"
shift_="${ICOUNT_SHIFT:-0}"

for tool in gcc ld objcopy make qemu-system-x86_64 redzone-check python3; do
    command -v "$tool" >/dev/null || { echo "demo: $tool is not installed" >&2; exit 2; }
done

make -s -C "$here" BUILD="$build" ITERATIONS="$iterations" TIMER_PERIOD_NS="$period" >"$build/make.log" 2>&1 \
    || { cat "$build/make.log" >&2; exit 2; }

for variant in red-zone no-red-zone; do
    out="$build/$variant"
    # isa-debug-exit turns the kernel's exit code c into QEMU status 2c+1: 1 is clean, 3 is mismatches.
    status=0
    timeout 60 qemu-system-x86_64 -accel tcg -machine pc -m 32M -display none -no-reboot -nic none \
        -monitor none -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -icount shift="$shift_" -kernel "$out/kernel.elf32" >"$out/serial.log" 2>"$out/qemu.err" || status=$?
    echo "$status" >"$out/qemu.status"
    if [ "$status" != 1 ] && [ "$status" != 3 ]; then
        echo "demo: $variant kernel failed (status $status)" >&2
        cat "$out/serial.log" "$out/qemu.err" >&2
        exit 2
    fi
    status=0
    redzone-check --format json --no-cache --source-root "$repo" "$out/kernel.elf" >"$out/findings.json" || status=$?
    if [ "$status" -gt 1 ]; then
        echo "demo: redzone-check could not scan $out/kernel.elf (status $status)" >&2
        exit 2
    fi
done

python3 "$here/summary.py" "$build"
