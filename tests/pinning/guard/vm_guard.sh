#!/bin/sh
# The file guard's real tests in a VM guest, on each fs-dax filesystem and tmpfs: one SCENARIO
# line per test case, so the VM suite counts them. Run by tests/vm/run_vm.sh --run, e.g.
#
#   tests/vm/run_vm.sh --kernel backports --no-scenarios --no-bench \
#     --add BUILD/tests/pinning/guard/file_guard_test --add BUILD/tests/pinning/guard/pb_oob \
#     --add /usr/bin/truncate --add /usr/bin/fallocate \
#     --add tests/pinning/guard/vm_guard.sh --run '/pb/bin/vm_guard.sh'
#
# Uses the guest contract of tests/vm/README.md (PB_BIN, PB_EXT4DAX, PB_XFSDAX, PB_TMPFS).
B=${PB_BIN:-/pb/bin}
export PB_OOB_HELPER="$B/pb_oob" PB_TOOL_DIR="$B" PB_TMPFS="${PB_TMPFS:-/mnt/tmpfs}"
echo "guard: kernel $(uname -r)"
status=0
run() {  # run NAME DAX_DIR FILTER
  name=$1
  out=$(PINBROKER_DAX_DIR="$2" "$B/file_guard_test" --gtest_filter="$3" 2>&1)
  [ $? -eq 0 ] || status=1
  # The guard's capabilities once, and whatever explains a failure.
  echo "$out" | grep -m1 'file guard started' | sed "s/^/  [$name] /"
  echo "$out" | grep -E -A3 'Failure$' | sed "s/^/  [$name] /"
  echo "$out" | awk -v fs="$name" '
    /: Skipped$/ { getline reason; next }
    /^\[ *(OK|FAILED|SKIPPED) *\]/ && / ms\)$/ {
      t = $0
      sub(/^\[[^]]*\] */, "", t); sub(/,.*$/, "", t); sub(/ \(.*$/, "", t)
      sub(/^Filesystems\/FileGuardTest\./, "", t); sub(/\/[a-z0-9]+$/, "", t)
      if ($0 ~ /^\[ *OK/) print "SCENARIO guard-" fs "-" t ": PASS"
      else if ($0 ~ /^\[ *FAILED/) print "SCENARIO guard-" fs "-" t ": FAIL"
      else { print "SCENARIO guard-" fs "-" t ": SKIP " reason; reason = "" }
    }'
}
run ext4dax "${PB_EXT4DAX:-/mnt/ext4dax}" '*/dax'
run xfsdax "${PB_XFSDAX:-/mnt/xfsdax}" '*/dax'
run tmpfs "" '*/tmpfs'
exit $status
