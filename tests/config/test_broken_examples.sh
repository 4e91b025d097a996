#!/usr/bin/env bash
# Runs ./vmm --check on every examples/broken/*.toml and asserts a non-zero
# exit and the message its "# expect: MESSAGE" first line gives (printed by
# the vmm as "vmm: MESSAGE"); then asserts that examples/linux.toml passes,
# unless the guest images it names are not built. Builds nothing.
# Exit 0: pass; 1: fail; 77: skip (no ./vmm).
set -uo pipefail
cd "$(dirname "$0")/../.."

if [ ! -x ./vmm ]; then
	echo "skip: ./vmm is not built (run ./build.sh)"
	exit 77
fi

fail=0 n=0
for f in examples/broken/*.toml; do
	[ -e "$f" ] || continue
	n=$((n + 1))
	first=$(head -n 1 "$f" | tr -d '\r')
	want=${first#\# expect: }
	if [ "$want" = "$first" ] || [ -z "$want" ]; then
		echo "FAIL $f: first line is not '# expect: MESSAGE'"
		fail=1
		continue
	fi
	err=$(./vmm --check "$f" 2>&1 >/dev/null)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		echo "FAIL $f: ./vmm --check exited 0"
		fail=1
	elif ! grep -qxF -- "vmm: $want" <<<"$err"; then
		echo "FAIL $f: stderr lacks the expected line"
		echo "   want: vmm: $want"
		echo "    got: $err"
		fail=1
	else
		echo "ok   $f"
	fi
done
if [ "$n" -lt 6 ]; then
	echo "FAIL: only $n broken examples"
	fail=1
fi

if [ ! -e guest-images/out/vmlinuz ] || [ ! -e guest-images/out/demo-initrd.cpio.gz ]; then
	echo "skip examples/linux.toml: guest images not built (guest-images/build.sh)"
elif err=$(./vmm --check examples/linux.toml 2>&1 >/dev/null); then
	echo "ok   examples/linux.toml"
else
	echo "FAIL examples/linux.toml: ./vmm --check failed: $err"
	fail=1
fi
exit "$fail"
