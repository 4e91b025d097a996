#!/usr/bin/env bash
# Runs every test that build.sh built, plus every tests/*/test_*.sh script.
# A test passes with exit 0, is skipped with 77, fails otherwise. Prints the
# tail of a failing test's log and ends with "N passed, N failed, N skipped".
# Nested-lab tests (lab/*) get one retry: QEMU's TCG emulation of nested SVM
# occasionally wedges or misfires (see tests/lab/lab.sh), so a lab test
# fails only if it fails twice; a pass after a retry is reported as such,
# with the first attempt's log kept.
# Filter with TESTS='glob' (matched against the test's name, e.g. 'lab/*').
set -uo pipefail
cd "$(dirname "$0")/.."
LOGDIR=build/test-logs
mkdir -p "$LOGDIR"
pass=0 fail=0 skip=0 failed=()

run_test() {
	local name=$1 limit=$2 rc start
	shift 2
	# shellcheck disable=SC2053
	[[ $name == ${TESTS:-*} ]] || return 0
	local log="$LOGDIR/${name//\//_}.log" retried=
	start=$(date +%s)
	timeout -k 10 "$limit" "$@" >"$log" 2>&1 </dev/null
	rc=$?
	if [[ $rc != 0 && $rc != 77 && $name == lab/* ]]; then
		mv "$log" "$log.first-attempt"
		retried=", after a retry; first attempt (exit $rc): $log.first-attempt"
		timeout -k 10 "$limit" "$@" >"$log" 2>&1 </dev/null
		rc=$?
	fi
	case $rc in
	0) pass=$((pass + 1)); echo "PASS $name ($(($(date +%s) - start)) s$retried)" ;;
	77) skip=$((skip + 1)); echo "SKIP $name: $(tail -n 1 "$log")" ;;
	*)
		fail=$((fail + 1)); failed+=("$name")
		echo "FAIL $name (exit $rc, $(($(date +%s) - start)) s); last lines of $log:"
		tail -n 25 "$log" | sed 's/^/    /'
		;;
	esac
}

for variant in musl asan tsan; do
	for t in build/$variant/tests/unit/test_* build/$variant/tests/kvm/test_*; do
		[ -x "$t" ] || continue
		dir=$(basename "$(dirname "$t")")
		run_test "$variant/$dir/$(basename "$t")" 600 "$t"
	done
done

for f in build/fuzz/tests/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	n=$(basename "$f")
	corpus=tests/fuzz/corpus/$n
	mkdir -p "$LOGDIR/corpus-$n"
	# libFuzzer's own exit status for a crash is 77, which means "skip" here.
	run_test "fuzz/$n" 600 "$f" -error_exitcode=1 -timeout_exitcode=1 \
		-max_total_time="${FUZZ_SECONDS:-60}" \
		"$LOGDIR/corpus-$n" $( [ -d "$corpus" ] && echo "$corpus")
done

for t in tests/*/test_*.sh; do
	[ -x "$t" ] || continue
	run_test "$(basename "$(dirname "$t")")/$(basename "$t" .sh)" 900 "$t"
done

[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
