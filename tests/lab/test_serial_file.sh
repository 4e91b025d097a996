#!/usr/bin/env bash
# [serial] output = PATH sends the guest's console to that file (and not
# to the vmm's stdout); output = "none" discards it. One KVM host boot, two
# guest runs.
set -uo pipefail
. "$(dirname "$0")/lab.sh"
lab_require
token=lab-token-$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmdline="console=ttyS0 ${LAB_L2_CMDLINE_EXTRA-quiet} lab.action=reboot $token"
cat >"$tmp/script" <<SCRIPT
. tests/lab/kvmhost.sh
lab_config \$LAB_TMP/file.toml \$GI/vmlinuz "$cmdline" \$LAB_TMP/serial.log
run_vmm file \$LAB_TMP/file.toml
if [ -e \$LAB_TMP/serial.log ]; then show_file serial \$LAB_TMP/serial.log; fi
lab_config \$LAB_TMP/none.toml \$GI/vmlinuz "$cmdline" none
run_vmm none \$LAB_TMP/none.toml
SCRIPT
kvm_run "$tmp/script" | tee "$tmp/log"
lab_expect_exit "$tmp/log" file 0 "output = PATH"
[ -n "$(lab_section "$tmp/log" FILE serial)" ] || lab_fail "output = PATH: the vmm did not create the file"
lab_expect_line "$tmp/log" FILE serial "LAB: init started" \
	"output = PATH: the guest's console is not in the file"
lab_section "$tmp/log" FILE serial | grep -q "^LAB: cmdline=.* $token" ||
	lab_fail "output = PATH: the file lacks the guest's cmdline line with $token"
lab_expect_line "$tmp/log" FILE serial "LAB: action=reboot" \
	"output = PATH: the file lacks the guest's last line"
! lab_section "$tmp/log" RUN file | grep -q '^LAB: ' ||
	lab_fail "output = PATH: the guest's console also went to the vmm's stdout"
lab_expect_exit "$tmp/log" none 0 "output = none"
! lab_section "$tmp/log" RUN none | grep -q '^LAB: ' ||
	lab_fail "output = none: the guest's console went to the vmm's stdout"
echo "PASS: the guest's console went to the file with output = PATH, nowhere with none"
