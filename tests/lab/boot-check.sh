#!/usr/bin/env bash
# boot-check.sh NAME KERNEL: the checks of test_boot_bzimage.sh and
# test_boot_pvh.sh, for guest-images/out/KERNEL.
set -uo pipefail
. "$(dirname "$0")/lab.sh"
name=$1 kernel=$2
token=lab-token-$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/script" <<SCRIPT
. tests/lab/kvmhost.sh
lab_config \$LAB_TMP/vm.toml \$GI/$kernel "console=ttyS0 lab.action=reboot $token" stdio 2
run_vmm $name \$LAB_TMP/vm.toml
SCRIPT
files=()
[ "$kernel" = vmlinuz ] || files=(-f "guest-images/out/$kernel")
kvm_run "${files[@]}" "$tmp/script" | tee "$tmp/log"
[ -n "$(lab_run_status "$tmp/log" "$name")" ] || lab_fail "the vmm run '$name' did not end"
lab_expect_line "$tmp/log" RUN "$name" "LAB: init started" \
	"the guest did not reach init"
nproc=$(lab_section "$tmp/log" RUN "$name" | sed -n 's/^LAB: nproc=//p')
[ "$nproc" = 2 ] || lab_fail "vcpus = 2 but the guest's nproc is '$nproc'"
cmdline=$(lab_section "$tmp/log" RUN "$name" | sed -n 's/^LAB: cmdline=//p')
case " $cmdline " in
*" $token "*) ;;
*) lab_fail "the token $token is not in the guest's /proc/cmdline: '$cmdline'" ;;
esac
for hack in acpi=off noacpi noapic nolapic nosmp maxcpus= nr_cpus= pci=off; do
	case " $cmdline" in
	*" $hack"*) lab_fail "the guest's command line has '$hack': '$cmdline'" ;;
	esac
done
lab_expect_line "$tmp/log" RUN "$name" \
	"LAB: initrd-marker=$(cat "$LAB_REPO/guest-images/out/demo-initrd.marker")" \
	"the initrd did not arrive"
lab_expect_line "$tmp/log" RUN "$name" "LAB: action=reboot" \
	"the guest did not get to reboot"
lab_expect_exit "$tmp/log" "$name" 0 "reboot -f in the guest"
echo "PASS: $kernel booted to init with 2 CPUs, its cmdline and initrd; reboot ended the vmm with 0"
