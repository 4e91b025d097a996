#!/usr/bin/env bash
# Serial input reaches the guest: with the guest's shell on the console,
# the line "echo $((6*7))lab" typed on the vmm's stdin prints "42lab" (the
# shell evaluated it, not just echoed it), and "exit" ends the shell, the
# guest reboots and the vmm exits with status 0. In the lab the typing goes
# through QEMU's stdin and L1's serial console, as in interactive use.
set -uo pipefail
. "$(dirname "$0")/lab.sh"
lab_require
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill -- -"$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
cat >"$tmp/script" <<SCRIPT
. tests/lab/kvmhost.sh
lab_config \$LAB_TMP/shell.toml \$GI/vmlinuz "console=ttyS0 ${LAB_L2_CMDLINE_EXTRA-quiet}"
run_vmm shell \$LAB_TMP/shell.toml
SCRIPT
mkfifo "$tmp/in"
exec 3<>"$tmp/in"
# In its own process group (setsid), so that a hung run can be ended whole.
setsid "$LAB_REPO/tests/lab/lab.sh" "$tmp/script" <"$tmp/in" >"$tmp/log" 2>&1 3>&- &
pid=$!

# wait_for SECONDS EGREP: waits until the log (without CRs) matches.
wait_for() {
	local end=$((SECONDS + $1))
	while [ $SECONDS -lt $end ]; do
		tr -d '\r' <"$tmp/log" | grep -Eq -- "$2" && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	tr -d '\r' <"$tmp/log" | grep -Eq -- "$2"
}

# finish SECONDS: closes the input, waits up to SECONDS for the run to end
# (then ends it), prints the log.
finish() {
	local end=$((SECONDS + $1))
	exec 3>&-
	while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
	kill -- -"$pid" 2>/dev/null
	wait "$pid"
	pid=
	cat "$tmp/log"
}

if ! wait_for 400 'lab-guest:/# '; then
	finish 5
	lab_fail "no shell prompt 'lab-guest:/# ' from the guest"
fi
sleep 0.5
printf 'echo $((6*7))lab\n' >&3
if ! wait_for 60 '^42lab$'; then
	finish 5
	lab_fail "typed 'echo \$((6*7))lab' on serial input, the guest never printed 42lab"
fi
printf 'exit\n' >&3
wait_for 300 '^LAB-RUN-END shell ' || true
finish 60
lab_expect_line "$tmp/log" RUN shell "LAB: shell exited, rebooting" \
	"'exit' typed on serial input did not end the guest's shell"
lab_expect_exit "$tmp/log" shell 0 "exit from the guest's shell (then reboot -f)"
echo "PASS: the guest's shell evaluated a line typed on serial input; exit ended the vmm with 0"
