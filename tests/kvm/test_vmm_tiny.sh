#!/usr/bin/env bash
# The real ./vmm on /dev/kvm with tiny purpose-built guests (tests/kvm/guests,
# built here into build/kvm-guests). Checks:
#  - serial output: a guest polling LSR.THRE prints a known line; it reaches
#    stdout exactly, or exactly the file of [serial] output = "FILE";
#  - every exit path: ACPI reset register, ACPI S5, i8042 0xFE each exit 0
#    with their message; a triple fault exits 1 with "triple fault";
#  - several vCPUs: the guest starts its APs with INIT-SIPI-SIPI through the
#    in-kernel LAPIC, each AP checks in with its CPUID APIC id, and the BSP
#    prints "CPUS 0 1 2 3" (vcpus = 4) or "CPUS 0" (vcpus = 1);
#  - SIGTERM ends a guest spinning forever: status 143, "stopped by";
#  - serial input: "ping" on stdin comes back through the guest's echo loop.
# Exit 0 pass, 1 fail, 77 when /dev/kvm is missing or unusable.
set -uo pipefail
cd "$(dirname "$0")/../.."
VMM=${VMM:-./vmm}
GUESTS=tests/kvm/guests
OUT=build/kvm-guests
LIMIT=10	# seconds for one vmm run; a passing run takes well under 1 s

skip() { echo "SKIP: $*"; exit 77; }
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

[ -e /dev/kvm ] || skip "/dev/kvm is missing"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm is not readable and writable by $(id -un)"
command -v gcc >/dev/null && command -v ld >/dev/null || skip "gcc or ld not found (./build.sh deps)"
[ -x "$VMM" ] || { echo "FAIL: $VMM is not built (run ./build.sh)"; exit 1; }

tmp=$(mktemp -d)
bg=
cleanup() {
	[ -n "$bg" ] && kill -KILL "$bg" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# build_guest NAME SRC [CPPFLAGS...]: links lib.S and SRC into $OUT/NAME.elf.
build_guest() {
	local name=$1 src=$2
	shift 2
	gcc -c -I"$GUESTS" "$@" -o "$OUT/$name.o" "$GUESTS/$src" &&
		ld -m elf_x86_64 -T "$GUESTS/tiny.ld" -o "$OUT/$name.elf" "$OUT/lib.o" "$OUT/$name.o"
}

build_guests() {
	local e
	mkdir -p "$OUT"
	gcc -c -I"$GUESTS" -o "$OUT/lib.o" "$GUESTS/lib.S" || return 1
	for e in acpi_reset acpi_poweroff i8042_reset triple_fault; do
		build_guest "exit_$e" exit.S -DEXIT="$e" || return 1
	done
	build_guest spin spin.S && build_guest echo echo.S && build_guest smp smp.S &&
		build_guest flood flood.S
}
build_guests || { echo "FAIL: building the guests in $OUT"; exit 1; }

# config NAME GUEST VCPUS [SERIAL_OUTPUT]: writes $tmp/NAME.toml.
config() {
	printf '[vm]\nmemory = 64M\nvcpus = %s\nkernel = "%s"\n' "$3" "$PWD/$OUT/$2.elf" >"$tmp/$1.toml"
	[ $# -lt 4 ] || printf '[serial]\noutput = "%s"\n' "$4" >>"$tmp/$1.toml"
}

# run NAME [STDIN]: runs the vmm on $tmp/NAME.toml with stdin from STDIN
# (default /dev/null); sets rc, and leaves $tmp/NAME.out and $tmp/NAME.err.
run() {
	local name=$1 in=${2:-/dev/null}
	timeout -k 2 "$LIMIT" "$VMM" "$tmp/$name.toml" <"$in" >"$tmp/$name.out" 2>"$tmp/$name.err"
	rc=$?
}

# expect NAME WHAT STATUS MESSAGE OUTPUT: checks the last run's exit status,
# that stderr contains MESSAGE, and that stdout is exactly OUTPUT.
expect() {
	local name=$1 what=$2 status=$3 msg=$4 want=$5 got
	got=$(cat "$tmp/$name.out"; echo x)
	got=${got%x}
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		fail "$what: the vmm was still running after $LIMIT s; stderr: $(cat "$tmp/$name.err")"
		return
	fi
	[ "$rc" = "$status" ] || fail "$what: exit status $rc, expected $status; stderr: $(cat "$tmp/$name.err")"
	grep -qF -- "$msg" "$tmp/$name.err" ||
		fail "$what: stderr lacks '$msg'; it is: $(cat "$tmp/$name.err")"
	[ "$got" = "$want" ] || fail "$what: stdout is $(printf '%q' "$got"), expected $(printf '%q' "$want")"
}

# The first run doubles as the probe: a KVM that cannot create a VM or vCPU
# (no permission, wrong API, module refusing) is a skip, not a failure.
HELLO=$'tiny guest: serial ok\n'
config reset exit_acpi_reset 2
run reset
if grep -qE 'cannot open /dev/kvm|KVM API version|KVM_(GET_API_VERSION|GET_VCPU_MMAP_SIZE|CREATE_VM|CREATE_VCPU) failed' "$tmp/reset.err"; then
	skip "/dev/kvm is unusable: $(head -n 1 "$tmp/reset.err")"
fi
expect reset "ACPI reset register" 0 "guest reset (ACPI reset register)" "$HELLO"

config s5 exit_acpi_poweroff 1
run s5
expect s5 "ACPI S5 sleep" 0 "powered off" "$HELLO"

config kbd exit_i8042_reset 1
run kbd
expect kbd "i8042 pulse reset" 0 "guest reset (i8042)" "$HELLO"

config tf exit_triple_fault 1
run tf
expect tf "triple fault" 1 "triple fault" "$HELLO"

config file exit_acpi_reset 1 "$tmp/serial.txt"
run file
expect file "[serial] output = FILE" 0 "guest reset (ACPI reset register)" ""
if [ ! -f "$tmp/serial.txt" ]; then
	fail "[serial] output = FILE: $tmp/serial.txt was not created"
elif [ "$(cat "$tmp/serial.txt"; echo x)" != "${HELLO}x" ]; then
	fail "[serial] output = FILE: the file holds $(printf '%q' "$(cat "$tmp/serial.txt")"), expected $(printf '%q' "$HELLO")"
fi

config smp4 smp 4
run smp4
expect smp4 "4 vCPUs started by INIT-SIPI-SIPI" 0 "guest reset (ACPI reset register)" $'CPUS 0 1 2 3\n'
config smp1 smp 1
run smp1
expect smp1 "1 vCPU" 0 "guest reset (ACPI reset register)" $'CPUS 0\n'

config echo echo 1
# From a pipe, as on a terminal the vmm polls stdin (a file cannot be polled).
run echo <(printf 'ping\n')
expect echo "serial input echoed by the guest" 0 "guest reset (ACPI reset register)" $'ready\nping\n'

# On a terminal, stdout shares stdin's non-blocking file description: while
# the terminal's reader is stopped and the pty fills up, guest output must
# wait, never be dropped. (The guest makes about 18 KB/s on PVM, so the
# reader stops long enough for the 64 KB of pty buffers to fill.)
config flood flood 1
line=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-
script -qec "timeout --foreground -k 2 60 $VMM $tmp/flood.toml 2>/dev/null" /dev/null </dev/null >"$tmp/flood.out" &
bg=$!
sleep 0.5
kill -STOP "$bg"
sleep 5
kill -CONT "$bg"
wait "$bg"
bg=
got=$(head -c $((2048 * 64)) "$tmp/flood.out" | tr -d '\r' | sort | uniq -c | sed 's/^ *//')
[ "$got" = "2048 $line" ] ||
	fail "flood through a stopped pty reader: lines lost or damaged: $(printf '%q' "$(printf '%s' "$got" | head -c 300)")"

# SIGTERM: wait for the guest to be spinning, then signal the vmm.
config spin spin 2
: >"$tmp/spin.out"
"$VMM" "$tmp/spin.toml" </dev/null >"$tmp/spin.out" 2>"$tmp/spin.err" &
bg=$!
end=$((SECONDS + LIMIT))
until grep -q spinning "$tmp/spin.out" || [ $SECONDS -ge $end ] || ! kill -0 "$bg" 2>/dev/null; do
	sleep 0.05
done
if ! grep -q spinning "$tmp/spin.out"; then
	fail "SIGTERM: the spinning guest never printed 'spinning'; stderr: $(cat "$tmp/spin.err")"
else
	kill -TERM "$bg"
	end=$((SECONDS + LIMIT))
	while kill -0 "$bg" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.05; done
	kill -0 "$bg" 2>/dev/null && { fail "SIGTERM: the vmm still runs $LIMIT s later"; kill -KILL "$bg"; }
fi
wait "$bg"
rc=$?
bg=
expect spin "SIGTERM" 143 "stopped by" $'spinning\n'

if [ "$failures" -ne 0 ]; then
	echo "$failures check(s) failed"
	exit 1
fi
echo "PASS: serial to stdout and file, 4 exit paths, INIT-SIPI-SIPI on 4 vCPUs, output through a stopped pty reader, SIGTERM, serial input"
