#!/usr/bin/env bash
# boot-example.sh CONFIG: boots CONFIG interactively (./build.sh run).
# On a machine whose /dev/kvm uses VT-x/SVM this is just "./vmm CONFIG";
# otherwise CONFIG boots inside the nested lab (tests/lab/lab.sh), with the
# terminal passed through to the guest's serial console.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lab/lab.sh
[ $# -eq 1 ] || { echo "usage: $0 CONFIG" >&2; exit 2; }
cfg=$1
[ -r "$cfg" ] || { echo "boot-example: cannot read $cfg" >&2; exit 1; }
guest-images/build.sh
if [ "$(kvm_mode)" = direct ]; then
	exec "$LAB_VMM" "$cfg"
fi

# In the lab the repo sits at /vmm: the config and the files it names must
# be inside the repo.
rel=$(realpath --relative-to="$LAB_REPO" "$cfg")
case $rel in
../* | /*) echo "boot-example: $cfg is outside $LAB_REPO; the lab only has the repo's files" >&2; exit 1 ;;
esac
files=(-f "$rel")
cfgdir=$(dirname "$cfg")
# kernel = "...", initrd = "..." and disks' path = "..." (relative to the
# config's folder). In the lab a disk is a copy: the guest's writes are lost.
while read -r path; do
	case $path in /*) p=$path ;; *) p=$cfgdir/$path ;; esac
	r=$(realpath -m --relative-to="$LAB_REPO" "$p")
	case $r in
	../* | /*) echo "boot-example: $path (in $cfg) is outside $LAB_REPO; the lab only has the repo's files" >&2; exit 1 ;;
	esac
	files+=(-f "$r")
done < <(sed -n 's/^[[:space:]]*\(kernel\|initrd\|path\)[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\2/p' "$cfg")

lab_require
script=$(mktemp)
trap 'rm -f "$script"' EXIT
printf 'exec "$LAB_VMM" %q\n' "$rel" >"$script"
echo "vmm: /dev/kvm here is PVM (no VT-x/SVM), which cannot boot stock Linux;" \
	"booting $cfg inside the nested lab (QEMU TCG + KVM) instead (Ctrl-A x stops the VM; Ctrl-] x quits QEMU)" >&2
kvm_run -i "${files[@]}" "$script"
