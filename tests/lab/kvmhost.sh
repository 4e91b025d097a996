# Helpers for the scripts that kvm_run (tests/lab/lab.sh) runs on the KVM
# host: the lab's L1 (busybox ash) or this machine (sh). POSIX sh only.
# Source it from the repo root: . tests/lab/kvmhost.sh
# Needs LAB_ROOT, LAB_TMP and LAB_VMM, which kvm_run exports.

GI=$LAB_ROOT/guest-images/out
VMM=$LAB_VMM
# The memory of test guests, in the config's syntax.
LAB_GUEST_MEMORY=${LAB_GUEST_MEMORY:-512M}

# lab_config FILE KERNEL CMDLINE [SERIAL_OUTPUT [VCPUS [INITRD]]]: writes a
# vmm config. SERIAL_OUTPUT defaults to stdio, VCPUS to 2, INITRD to the
# demo initramfs ("none": no initrd).
lab_config() {
	_initrd=${6:-$GI/demo-initrd.cpio.gz}
	{
		echo "[vm]"
		echo "memory = $LAB_GUEST_MEMORY"
		echo "vcpus = ${5:-2}"
		echo "kernel = \"$2\""
		[ "$_initrd" = none ] || echo "initrd = \"$_initrd\""
		echo "cmdline = \"$3\""
		echo
		echo "[serial]"
		echo "output = \"${4:-stdio}\""
	} >"$1"
}

# run_vmm NAME CONFIG [SECONDS]: runs the vmm on CONFIG (killed after
# SECONDS, default 150) between the lines "LAB-RUN-BEGIN NAME" and
# "LAB-RUN-END NAME status=N seconds=S"; returns the vmm's exit status.
# VMM_ARGS: options put before CONFIG (e.g. --stats). The vmm's stderr goes
# with its stdout, so that its messages are in the log on any KVM host.
run_vmm() {
	echo "LAB-RUN-BEGIN $1"
	echo "LAB-RUN-CONFIG $1:"
	sed 's/^/    /' "$2"
	_t0=$(date +%s)
	# GNU timeout moves the vmm out of the terminal's foreground group
	# unless told not to; busybox timeout has no such option and no need.
	_fg=
	timeout --help 2>&1 | grep -q -- --foreground && _fg=--foreground
	timeout $_fg -s KILL "${3:-150}" "$VMM" ${VMM_ARGS:-} "$2" 2>&1
	_rc=$?
	echo
	echo "LAB-RUN-END $1 status=$_rc seconds=$(($(date +%s) - _t0))"
	return $_rc
}

# show_file NAME FILE: prints FILE between "LAB-FILE-BEGIN NAME" and
# "LAB-FILE-END NAME".
show_file() {
	echo "LAB-FILE-BEGIN $1"
	cat "$2"
	echo
	echo "LAB-FILE-END $1"
}
