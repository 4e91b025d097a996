#!/usr/bin/env bash
# Checks the tables core/acpi.c builds (with the PCI root) against ACPICA,
# the same code Linux runs: iasl disassembles each table (any warning, bad
# checksum or malformed subtable fails), the DSDT's AML must recompile byte
# for byte, and acpiexec loads FADT+DSDT+MADT+MCFG, evaluates the objects,
# converts the PCI host bridge's and the ECAM reservation's _CRS into
# resources as Linux's acpi_walk_resources does, and performs the S5
# (power-off) sequence, whose port writes are checked.
# Exit 0 pass, 1 fail, 77 when acpica-tools is missing and cannot be
# installed. TEST_ACPI_BIN overrides the test binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${TEST_ACPI_BIN:-build/musl/tests/unit/test_acpi}

fail() { echo "FAIL: $*" >&2; exit 1; }

need_acpica() {
	command -v iasl >/dev/null && command -v acpiexec >/dev/null && return 0
	if [ "$(id -u)" -eq 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq acpica-tools >/dev/null 2>&1 ||
			{ apt-get update -qq >/dev/null 2>&1 &&
			  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq acpica-tools >/dev/null 2>&1; } || true
	fi
	command -v iasl >/dev/null && command -v acpiexec >/dev/null && return 0
	echo "SKIP: iasl/acpiexec (acpica-tools) not installed and cannot be installed"
	exit 77
}

# disasm SIG: iasl -d DIR/SIG.dat into SIG.dsl; fails on any complaint.
disasm() {
	local sig=$1 log
	log=$(cd "$DIR" && iasl -d "$sig.dat" 2>&1) || fail "iasl -d $sig.dat: $log"
	[ -s "$DIR/$sig.dsl" ] || fail "iasl wrote no $sig.dsl: $log"
	if grep -i -E 'warning|error|incorrect|invalid|unknown|terminates|should be|\*\*\*\*' \
		<(printf '%s\n' "$log") "$DIR/$sig.dsl"; then
		fail "iasl complains about $sig (above)"
	fi
}

# expect FILE REGEX [COUNT]: REGEX matches COUNT lines (default: at least one).
expect() {
	local file=$1 re=$2 want=${3:-} n
	n=$(grep -c -E -- "$re" "$DIR/$file" || true)
	if [ -z "$want" ]; then
		[ "$n" -ge 1 ] || fail "$file: no line matches '$re'"
	else
		[ "$n" -eq "$want" ] || fail "$file: $n lines match '$re', expected $want"
	fi
}

check_fadt() {
	expect FACP.dsl 'Table Length : 00000114'
	expect FACP.dsl 'Revision : 06'
	expect FACP.dsl 'Hardware Reduced \(V5\) : 1'
	expect FACP.dsl 'Reset Register Supported \(V2\) : 1'
	expect FACP.dsl '8042 Present on ports 60/64 \(V2\) : 0'
	expect FACP.dsl 'VGA Not Present \(V4\) : 1'
	expect FACP.dsl 'CMOS RTC Not Present \(V5\) : 1'
	expect FACP.dsl 'MSI Not Supported \(V4\) : 0'
	expect FACP.dsl "Address : $(printf '%016X' "$sleep_port")" 2
}

check_mcfg() {
	expect XSDT.dsl 'ACPI Table Address +[0-9] :' 3
	expect MCFG.dsl 'Table Length : 0000003C'
	expect MCFG.dsl "Base Address : $(printf '%016X' "$ecam")"
	expect MCFG.dsl 'Segment Group Number : 0000'
	expect MCFG.dsl 'Start Bus Number : 00'
	expect MCFG.dsl 'End Bus Number : 00'
}

check_madt() {
	expect APIC.dsl 'Subtable Type : 00 \[Processor Local APIC\]' "$n_cpus"
	expect APIC.dsl 'Processor Enabled : 1' "$n_cpus"
	expect APIC.dsl 'Subtable Type : 01 \[I/O APIC\]' 1
	expect APIC.dsl 'Subtable Type : 02 \[Interrupt Source Override\]' 1
	expect APIC.dsl 'Interrupt : 00000002' 1
	expect APIC.dsl 'Subtable Type : 04 \[Local APIC NMI\]' 1
}

check_dsdt() {
	expect DSDT.dsl 'Name \(\\_S5, Package'
	expect DSDT.dsl 'Device \(COM1\)'
	expect DSDT.dsl 'EisaId \("PNP0501"\)'
	expect DSDT.dsl 'Device \(PCI0\)'
	expect DSDT.dsl 'Name \(_HID, EisaId \("PNP0A03"\)'
	expect DSDT.dsl 'Name \(_SEG, Zero\)'
	expect DSDT.dsl 'Name \(_BBN, Zero\)'
	expect DSDT.dsl 'WordBusNumber \(ResourceProducer'
	expect DSDT.dsl 'WordIO \(ResourceProducer' 2
	expect DSDT.dsl 'DWordMemory \(ResourceProducer'
	expect DSDT.dsl "$(printf '0x%08X' "$win_lo"), +// Range Minimum"
	expect DSDT.dsl "$(printf '0x%08X' "$win_hi"), +// Range Maximum"
	expect DSDT.dsl 'Name \(_HID, EisaId \("PNP0C02"\)'
	expect DSDT.dsl 'Memory32Fixed \(ReadWrite'
	expect DSDT.dsl "$(printf '0x%08X' "$ecam"), +// Address Base"
	# iasl's own encoding of the disassembled source, optimizations off,
	# must equal ours after the 36-byte header.
	(cd "$DIR" && iasl -oa -p recompiled DSDT.dsl >recompile.log 2>&1) ||
		fail "DSDT.dsl does not recompile: $(cat "$DIR/recompile.log")"
	cmp <(tail -c +37 "$DIR/recompiled.aml") <(tail -c +37 "$DIR/DSDT.dat") ||
		fail "DSDT AML differs from iasl's encoding of the same source"
}

# acpiexec: ACPICA's table load, namespace and hardware-reduced sleep path.
check_acpiexec() {
	local out="$DIR/acpiexec.log" io="$DIR/acpiexec-io.log" writes want
	(cd "$DIR" && timeout 60 acpiexec -b 'evaluate \_S5; evaluate \_SB.COM1._CRS; sleep 5' \
		FACP.dat DSDT.dat APIC.dat MCFG.dat) >"$out" 2>&1 || fail "acpiexec failed: $(tail "$out")"
	if grep -i -E 'error|warning|exception' "$out"; then
		fail "acpiexec reports problems (above)"
	fi
	expect acpiexec.log 'Register values for sleep state S5: Sleep-A: 05'
	expect acpiexec.log 'HwExtendedSleep .*Entering sleep state \[S5\]'
	expect acpiexec.log '0000: 47 01 F8 03 F8 03 01 08 22 10 00 79 00'
	# Debug level ACPI_LV_IO traces every register access; the writes
	# between "Going to sleep" and the wake-up must be WAK_STS, then
	# SLP_TYP|SLP_EN, both 8 bit to the sleep port.
	(cd "$DIR" && timeout 60 acpiexec -x 0x04000000 -b 'sleep 5' FACP.dat DSDT.dat) \
		>"$io" 2>&1 || fail "acpiexec (I/O trace) failed: $(tail "$io")"
	writes=$(sed -n '/Going to sleep (S5)/,/Wake: Prepare/p' "$io" |
		grep -o 'Wrote: [0-9A-F]* width *[0-9]* *to [0-9A-F]* ([A-Za-z]*)' | tr -s ' ' | tr '\n' ';')
	want="Wrote: 0000000000000080 width 8 to $(printf '%016X' "$sleep_port") (SystemIO);"
	want+="Wrote: $(printf '%016X' "$s5_value") width 8 to $(printf '%016X' "$sleep_port") (SystemIO);"
	[ "$writes" = "$want" ] || fail "S5 register writes: '$writes', expected '$want'"
}

# acpiexec's "resources": ACPICA turns each _CRS into resource structures
# (and back, comparing the bytes), as Linux does for the host bridge
# windows and the motherboard reservation that validates the MCFG.
check_resources() {
	local out="$DIR/resources.log" ranges want
	(cd "$DIR" && timeout 60 acpiexec -b 'resources \_SB.PCI0; resources \_SB.MRES' \
		FACP.dat DSDT.dat APIC.dat MCFG.dat) >"$out" 2>&1 ||
		fail "acpiexec resources failed: $(tail "$out")"
	if grep -i -E 'mismatch|error|warning|exception|\*\*\*\*' "$out"; then
		fail "acpiexec reports problems converting _CRS (above)"
	fi
	ranges=$(grep -E 'Resource Type :|Address (Minimum|Maximum) :|^ +Address :|Address Length :' \
		"$out" | sed 's/.* : //' | tr '\n' ';')
	want="Bus Number Range;0000;0000;0001;0CF8;0CF8;08;I/O Range;0000;0CF7;0CF8;"
	want+="I/O Range;0D00;FFFF;F300;Memory Range;"
	want+="$(printf '%08X;%08X;%08X;' "$win_lo" "$win_hi" $((win_hi - win_lo + 1)))"
	want+="$(printf '%08X;%08X;' "$ecam" 0x100000)"
	[ "$ranges" = "$want" ] || fail "PCI0/MRES resources: '$ranges', expected '$want'"
}

# The checker must catch a broken table: corrupt the MADT and expect a fail.
check_negative_control() {
	local good="$DIR/APIC.dat"
	cp "$good" "$DIR/good-APIC.dat"
	printf '\x07' | dd of="$good" bs=1 seek=45 conv=notrunc status=none
	if (disasm APIC) >/dev/null 2>&1; then
		fail "negative control: a corrupted MADT passed"
	fi
	mv "$DIR/good-APIC.dat" "$good"
	rm -f "$DIR/APIC.dsl"
}

[ -x "$BIN" ] || fail "$BIN is not built (run ./build.sh)"
need_acpica
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

facts=$("$BIN" --dump "$DIR") || fail "$BIN --dump failed"
re='^n_cpus=([0-9]+) sleep_port=(0x[0-9a-f]+) s5_value=(0x[0-9a-f]+) '
re+='ecam=(0x[0-9a-f]+) window=(0x[0-9a-f]+)-(0x[0-9a-f]+)$'
[[ $facts =~ $re ]] || fail "unexpected --dump output: $facts"
n_cpus=${BASH_REMATCH[1]} sleep_port=${BASH_REMATCH[2]} s5_value=${BASH_REMATCH[3]}
ecam=${BASH_REMATCH[4]} win_lo=${BASH_REMATCH[5]} win_hi=${BASH_REMATCH[6]}

check_negative_control
for sig in XSDT FACP APIC DSDT MCFG; do
	disasm "$sig"
done
check_fadt
check_madt
check_mcfg
check_dsdt
check_acpiexec
check_resources
echo "iasl $(iasl -v 2>/dev/null | grep -o -m1 'version [0-9]*'): tables disassemble cleanly;" \
	"$n_cpus CPUs; DSDT recompiles identically; PCI0 windows and the MCFG's ECAM at $ecam" \
	"convert in acpiexec; acpiexec S5 writes $s5_value to $sleep_port"
