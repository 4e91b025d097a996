#!/usr/bin/env bash
# The Debian cloud kernel, as a bzImage, boots to init under the vmm with
# vcpus = 2: the guest sees exactly 2 CPUs, the command line arrives
# (a fresh token shows in /proc/cmdline, and no acpi=off/noapic-style
# option was added), the initrd arrives (its marker file is printed), and
# the guest's "reboot -f" ends the vmm with status 0.
set -uo pipefail
. "$(dirname "$0")/lab.sh"
lab_require
exec "$LAB_REPO/tests/lab/boot-check.sh" bzimage vmlinuz
