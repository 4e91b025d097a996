#!/usr/bin/env bash
# The guest ends the vmm: "reboot -f" (reset) and "poweroff -f" (ACPI S5)
# each make the vmm exit with status 0, after the guest got to that action.
# One KVM host boot, two guest runs.
set -uo pipefail
. "$(dirname "$0")/lab.sh"
lab_require
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmdline="console=ttyS0 ${LAB_L2_CMDLINE_EXTRA-quiet}"
cat >"$tmp/script" <<SCRIPT
. tests/lab/kvmhost.sh
lab_config \$LAB_TMP/reboot.toml \$GI/vmlinuz "$cmdline lab.action=reboot"
run_vmm reboot \$LAB_TMP/reboot.toml
lab_config \$LAB_TMP/poweroff.toml \$GI/vmlinuz "$cmdline lab.action=poweroff"
run_vmm poweroff \$LAB_TMP/poweroff.toml
SCRIPT
kvm_run "$tmp/script" | tee "$tmp/log"
for action in reboot poweroff; do
	lab_expect_line "$tmp/log" RUN $action "LAB: action=$action" \
		"the guest did not get to '$action -f'"
	lab_expect_exit "$tmp/log" $action 0 "$action -f in the guest"
done
echo "PASS: reboot -f and poweroff -f in the guest each ended the vmm with status 0"
