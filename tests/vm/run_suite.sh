#!/usr/bin/env bash
# Runs the VM tests on both kernels, one after the other (Debian 12's 6.1, then the newest
# trixie-backports kernel), and totals the results.
#
# Usage: tests/vm/run_suite.sh --bin-dir DIR [--bin-dir DIR...] [--junit-dir DIR] [--log-dir DIR]
#                              [--kernels "bookworm backports"] [-- RUN_VM_OPTIONS...]
#   --bin-dir DIR     build tree(s) to take the guest programs from (see run_vm.sh)
#   --junit-dir DIR   write vm-<kernel>.junit.xml there (for scripts/junit_summary.py)
#   --log-dir DIR     keep each kernel's serial console log there as vm-<kernel>.console.log
#   --kernels LIST    which kernels (default: bookworm backports)
#   -- ...            further options for run_vm.sh (e.g. --timeout 600, --quiet)
# Each kernel's lines are prefixed with "[<kernel>] "; the last line is
# "N passed, N failed, N skipped" over all kernels. Exits non-zero if anything failed or a VM did
# not finish.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "run_suite: error: $*" >&2; exit 2; }

ARGS=() JUNIT_DIR="" LOG_DIR="" KERNELS="bookworm backports" BIN_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) BIN_DIR=${2:?--bin-dir needs a value}; ARGS+=(--bin-dir "$BIN_DIR"); shift 2 ;;
    --junit-dir) JUNIT_DIR=${2:?}; shift 2 ;;
    --log-dir) LOG_DIR=${2:?}; shift 2 ;;
    --kernels) KERNELS=${2:?}; shift 2 ;;
    --) shift; ARGS+=("$@"); break ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

# The file guard's real tests (issue 5) on the guests' fs-dax filesystems and tmpfs, when built:
# tests/pinning/guard/vm_guard.sh prints one SCENARIO line per test case.
GUARD_TEST=$BIN_DIR/tests/pinning/guard/file_guard_test GUARD_OOB=$BIN_DIR/tests/pinning/guard/pb_oob
if [ -n "$BIN_DIR" ] && [ -x "$GUARD_TEST" ] && [ -x "$GUARD_OOB" ]; then
  ARGS+=(--add "$GUARD_TEST" --add "$GUARD_OOB" --add "$(command -v truncate)"
    --add "$(command -v fallocate)" --add "$HERE/../pinning/guard/vm_guard.sh"
    --run /pb/bin/vm_guard.sh)
fi

total_p=0 total_f=0 total_s=0 status=0 start=$SECONDS
summaries=()
for k in $KERNELS; do
  extra=()
  [ -z "$JUNIT_DIR" ] || extra+=(--junit "$JUNIT_DIR/vm-$k.junit.xml")
  [ -z "$LOG_DIR" ] || extra+=(--log "$LOG_DIR/vm-$k.console.log")
  out=$(mktemp "${TMPDIR:-/tmp}/pb-vm-suite.XXXXXX")
  t0=$SECONDS
  rc=0
  "$HERE/run_vm.sh" --kernel "$k" "${ARGS[@]}" "${extra[@]}" 2>&1 | tee "$out" | sed -u "s/^/[$k] /" ||
    rc=${PIPESTATUS[0]}
  line=$(grep -E "^vm-$k: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$" "$out" | tail -n1 || true)
  rm -f "$out"
  if [ -z "$line" ]; then
    # run_vm.sh failed before booting (no kernel, no qemu...): one failure for this kernel.
    line="vm-$k: 0 passed, 1 failed, 0 skipped"
    [ "$rc" != 0 ] || rc=2
    if [ -n "$JUNIT_DIR" ]; then
      mkdir -p "$JUNIT_DIR"
      printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="vm-%s" tests="1" failures="1">\n  <testcase classname="vm-%s" name="vm-%s-run"><failure message="run_vm.sh exited %s before reporting"/></testcase>\n</testsuite>\n' \
        "$k" "$k" "$k" "$rc" >"$JUNIT_DIR/vm-$k.junit.xml"
    fi
  fi
  read -r p f s < <(sed -E 's/^[^:]*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/' <<<"$line")
  total_p=$((total_p + p)) total_f=$((total_f + f)) total_s=$((total_s + s))
  [ "$rc" = 0 ] || status=1
  summaries+=("$line ($((SECONDS - t0)) s, exit $rc)")
done

echo
echo "VM suite ($((SECONDS - start)) s):"
for l in "${summaries[@]}"; do echo "  $l"; done
echo "$total_p passed, $total_f failed, $total_s skipped"
exit "$status"
