#!/usr/bin/env bash
# The same boot as test_boot_bzimage.sh through the PVH entry: the kernel is
# the ELF vmlinux extracted from the Debian cloud bzImage (Xen PVH note).
set -uo pipefail
. "$(dirname "$0")/lab.sh"
lab_require
exec "$LAB_REPO/tests/lab/boot-check.sh" pvh vmlinux
