#!/usr/bin/env bash
# Boots a Debian kernel in qemu (TCG) with two soft-RoCE devices and two fs-dax filesystems, runs
# the guest's smoke checks and the project's VM scenarios/benchmarks, and reports the results.
#
# Usage: tests/vm/run_vm.sh --kernel bookworm|backports [options]
#   --bin-dir DIR      a build tree (or bin directory) to take pinbrokerd, pinctl, pinrdma,
#                      vm_scenarios and vm_benchmarks from, found by name; repeatable; missing
#                      programs are left out
#   --add FILE         one more program for /pb/bin in the guest; repeatable
#   --run CMD          a shell command the guest runs after the smoke checks (its SCENARIO lines
#                      count; a non-zero exit without a FAIL line is a failure)
#   --env KEY=VALUE    a variable for the guest's programs; repeatable
#   --scenario-args S  arguments for vm_scenarios (word-split in the guest)
#   --no-scenarios     do not run vm_scenarios          --no-bench   do not run vm_benchmarks
#   --timeout S        host-side limit for the whole VM, seconds (default 900)
#   --shell            interactive: a guest shell after the checks (exit it to power off)
#   --log FILE         keep the serial console log there (default: in the work dir)
#   --keep             keep the work dir (initramfs, nvdimm images, log)
#   --quiet            echo only result lines, not the whole guest console
#   --junit FILE       also write the results as a JUnit report (one testcase per SCENARIO line)
#   --no-strip         keep debug info in the guest's copies of the binaries
#   --cache DIR        kernel cache (default $PINBROKER_VM_CACHE, else /var/cache/pinbroker-vm,
#                      else ~/.cache/pinbroker-vm; see fetch_kernel.sh)
#   --smp N / --mem M  guest CPUs (default 2) and RAM (default 2G)
#   --append ARGS      extra kernel command-line arguments
# The last line is "vm-<kernel>: N passed, N failed, N skipped". Exit status: 0 when every check
# passed, 1 when any failed, 2 when the guest did not finish (timeout, crash, no summary) or the
# VM could not be prepared.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "run_vm: error: $*" >&2; exit 2; }
log() { echo "run_vm: $*" >&2; }

JUNIT="" KERNEL="" TIMEOUT=900 SHELL_MODE=0 KEEP=0 QUIET=0 STRIP_ARG="" LOGFILE="" RUN_CMD=""
CACHE="" SMP=2 MEM=2G APPEND_EXTRA=""
SCEN_ARGS="" SKIP_SCEN=0 SKIP_BENCH=0
BIN_DIRS=() ADDS=() ENVS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) KERNEL=${2:?--kernel needs a value}; shift 2 ;;
    --bin-dir) BIN_DIRS+=("${2:?--bin-dir needs a value}"); shift 2 ;;
    --add) ADDS+=("${2:?--add needs a value}"); shift 2 ;;
    --run) RUN_CMD=${2:?--run needs a value}; shift 2 ;;
    --env) [[ "${2:-}" == [A-Za-z_]*=* ]] || die "--env needs KEY=VALUE"; ENVS+=("$2"); shift 2 ;;
    --scenario-args) SCEN_ARGS=${2?}; shift 2 ;;
    --no-scenarios) SKIP_SCEN=1; shift ;;
    --no-bench) SKIP_BENCH=1; shift ;;
    --timeout) TIMEOUT=${2:?}; [[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout needs seconds"; shift 2 ;;
    --shell) SHELL_MODE=1; shift ;;
    --log) LOGFILE=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --quiet) QUIET=1; shift ;;
    --junit) JUNIT=${2:?}; shift 2 ;;
    --no-strip) STRIP_ARG=--no-strip; shift ;;
    --cache) CACHE=${2:?}; shift 2 ;;
    --smp) SMP=${2:?}; shift 2 ;;
    --mem) MEM=${2:?}; shift 2 ;;
    --append) APPEND_EXTRA=${2?}; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
case "$KERNEL" in bookworm | backports) ;; *) die "--kernel bookworm|backports is required" ;; esac
# The cache: $PINBROKER_VM_CACHE, else /var/cache/pinbroker-vm when it can be written, else
# ~/.cache/pinbroker-vm.
default_cache() {
  if [ -n "${PINBROKER_VM_CACHE:-}" ]; then
    echo "$PINBROKER_VM_CACHE"
  elif mkdir -p /var/cache/pinbroker-vm 2>/dev/null && [ -w /var/cache/pinbroker-vm ]; then
    echo /var/cache/pinbroker-vm
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/pinbroker-vm"
  fi
}
[ -n "$CACHE" ] || CACHE=$(default_cache)
for d in "${BIN_DIRS[@]}"; do [ -d "$d" ] || die "--bin-dir $d is not a directory"; done
for tool in qemu-system-x86_64 timeout flock; do
  command -v "$tool" >/dev/null || die "'$tool' not found (run scripts/setup.sh)"
done

T_START=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pb-vm-$KERNEL.XXXXXX")
QEMU_PID=""
cleanup() {
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then kill -KILL "$QEMU_PID" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Kernel (cached).
t0=$SECONDS
KDIR=$("$HERE/fetch_kernel.sh" "$KERNEL" "$CACHE" | tail -n1) || die "fetch_kernel.sh failed"
T_FETCH=$((SECONDS - t0))

# 2. Binaries, found by name in the given trees.
BINS=()
for name in pinbrokerd pinctl pinrdma vm_scenarios vm_benchmarks; do
  found=""
  for d in "${BIN_DIRS[@]}"; do
    # The newest regular executable of that name outside CMake's scratch directories.
    cand=$(find "$d" -name CMakeFiles -prune -o -type f -name "$name" -perm -u+x -printf '%T@ %p\n' 2>/dev/null |
      sort -rn | sed -n 1p | cut -d' ' -f2-)
    [ -n "$cand" ] && { found=$cand; break; }
  done
  [ -n "$found" ] && BINS+=("$found")
done
for f in "${ADDS[@]}"; do [ -f "$f" ] || die "--add $f: no such file"; BINS+=("$f"); done
if [ ${#BIN_DIRS[@]} -gt 0 ] || [ ${#ADDS[@]} -gt 0 ]; then
  log "guest programs: ${BINS[*]:-none found}"
fi

# 3. Guest settings and initramfs (the kernel tree is read under the cache's shared lock so a
#    concurrent fetch cannot prune it meanwhile).
{
  echo "PB_VM_SKIP_SCENARIOS=$SKIP_SCEN"
  echo "PB_VM_SKIP_BENCH=$SKIP_BENCH"
  echo "PB_VM_SHELL=$SHELL_MODE"
  printf 'PB_SCENARIO_ARGS=%q\n' "$SCEN_ARGS"
  for kv in "${ENVS[@]}"; do printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"; done
} >"$WORK/run.env"
RUN_ARGS=()
if [ -n "$RUN_CMD" ]; then
  printf '#!/bin/sh\n%s\n' "$RUN_CMD" >"$WORK/run.sh"
  RUN_ARGS=(--run-file "$WORK/run.sh")
fi
t0=$SECONDS
exec 9>"$CACHE/.lock"
flock -s 9
KDIR=$(readlink -f "$KDIR")
# shellcheck source=/dev/null
. "$KDIR/kernel.env"
cp "$PB_KVMLINUZ" "$WORK/vmlinuz"
"$HERE/build_initramfs.sh" --kernel "$KDIR" --out "$WORK/initramfs" --env-file "$WORK/run.env" \
  "${RUN_ARGS[@]}" $STRIP_ARG "${BINS[@]}" || die "build_initramfs.sh failed"
flock -u 9
T_INITRAMFS=$((SECONDS - t0))

# 4. Fresh sparse nvdimm backing files (a reused one boots in fsdax mode and the guest's
#    conversion from raw mode then fails). mkfs.xfs needs at least 300 MB.
truncate -s 512M "$WORK/nv0.img" "$WORK/nv1.img"

# 5. Boot.
LOG=${LOGFILE:-$WORK/console.log}
mkdir -p "$(dirname "$LOG")"
: >"$LOG"
# Timekeeping from the HPET, which qemu drives from the host's clock: under TCG the guest
# calibrates the TSC against the emulated PIT, and on a busy host that calibration can be off by
# 2-3x (measured: a 'sleep 20' took 7.8 s), which makes every timeout in the guest fire early.
# tsc=reliable keeps the clocksource watchdog quiet about that TSC.
APPEND="console=ttyS0,115200 panic=-1 quiet loglevel=4 clocksource=hpet tsc=reliable"
APPEND+=" mitigations=off nokaslr no_timer_check cryptomgr.notests random.trust_cpu=on"
APPEND+=" i8042.noaux i8042.nopnp"
APPEND+=" ${APPEND_EXTRA}"
# One host thread runs both vCPUs (thread=single). With multi-threaded TCG (qemu 7.2) the 7.3
# backports kernel once oopsed at boot ("Oops: int3" in set_next_task_fair: a vCPU ran kernel text
# while another patched it through text_poke_bp's int3), the failure other CI systems report for
# x86 guests under multi-threaded TCG. The guest still has two CPUs and their interleavings; the
# whole suite took 353 s this way against 336 s multi-threaded.
QEMU=(qemu-system-x86_64 -nodefaults -no-user-config
  -accel tcg,thread=single -cpu max -smp "$SMP" -m "$MEM,slots=4,maxmem=6G"
  -machine pc,nvdimm=on -nic none -no-reboot -nographic -monitor none
  -kernel "$WORK/vmlinuz" -initrd "$WORK/initramfs" -append "$APPEND"
  -object "memory-backend-file,id=nv0,share=on,mem-path=$WORK/nv0.img,size=512M"
  -device nvdimm,id=nvdimm0,memdev=nv0
  -object "memory-backend-file,id=nv1,share=on,mem-path=$WORK/nv1.img,size=512M"
  -device nvdimm,id=nvdimm1,memdev=nv1)
log "booting $PB_KV ($KERNEL $PB_KPKGVERSION), timeout ${TIMEOUT}s, console log $LOG"
t0=$SECONDS
if [ "$SHELL_MODE" = 1 ]; then
  # Interactive: the console is this terminal (Ctrl-A X quits qemu).
  "${QEMU[@]}" -serial mon:stdio | tee "$LOG"
  exit 0
fi
"${QEMU[@]}" -serial stdio </dev/null >"$LOG" 2>&1 &
QEMU_PID=$!
# Echo the console as it comes, without carriage returns and SeaBIOS's terminal escapes.
STRIP_TTY='s/\r//g; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g'
FILTER='.'
[ "$QUIET" = 1 ] && FILTER='^(SCENARIO |PB-VM-DONE|== )'
tail -n +1 -f --pid="$QEMU_PID" "$LOG" 2>/dev/null | sed -u "$STRIP_TTY" | grep --line-buffered -aE "$FILTER" &
TAIL_PID=$!
TIMED_OUT=0
while kill -0 "$QEMU_PID" 2>/dev/null; do
  if [ $((SECONDS - t0)) -ge "$TIMEOUT" ]; then
    TIMED_OUT=1
    kill -TERM "$QEMU_PID" 2>/dev/null || true
    sleep 2
    kill -KILL "$QEMU_PID" 2>/dev/null || true
    break
  fi
  sleep 1
done
QEMU_RC=0
wait "$QEMU_PID" || QEMU_RC=$?
QEMU_PID=""
wait "$TAIL_PID" 2>/dev/null || true
T_VM=$((SECONDS - t0))

# 6. Verdict.
CLEAN=$(sed "$STRIP_TTY" "$LOG")
boot_at=$(grep -m1 -o '== setup: kernel.*(t=[0-9.]*s)' <<<"$CLEAN" | sed 's/.*t=\([0-9.]*\)s)/\1/' || true)
smoke_at=$(grep -m1 -o '^== smoke (t=[0-9.]*s)' <<<"$CLEAN" | sed 's/.*t=\([0-9.]*\)s)/\1/' || true)
smoke_done=$(grep -m1 -o '^== smoke done (t=[0-9.]*s)' <<<"$CLEAN" | sed 's/.*t=\([0-9.]*\)s)/\1/' || true)
done_line=$(grep -a '^PB-VM-DONE ' <<<"$CLEAN" | tail -n1 || true)
# The verdict counts the SCENARIO lines on the console (they are also the JUnit test cases), plus
# a failure when the guest did not finish or its own count disagrees with the console.
RESULTS=$(grep -a '^SCENARIO [^ ]*: \(PASS\|FAIL\|SKIP\)' <<<"$CLEAN" || true)
count() { [ -z "$RESULTS" ] && echo 0 || awk -v v="$1" '$3 == v { n++ } END { print n + 0 }' <<<"$RESULTS"; }
c_pass=$(count PASS) c_fail=$(count FAIL) c_skip=$(count SKIP)
EXTRA=""
status=0
if [ -n "$done_line" ]; then
  g=$(sed 's/.*passed=\([0-9]*\) failed=\([0-9]*\) skipped=\([0-9]*\).*/\1 \2 \3/' <<<"$done_line")
  if [ "$((c_pass + c_fail + c_skip))" = 0 ]; then
    EXTRA="SCENARIO vm-$KERNEL-results: FAIL the guest reported no results"
  elif [ "$g" != "$c_pass $c_fail $c_skip" ]; then
    EXTRA="SCENARIO vm-$KERNEL-results: FAIL the guest counted $g (passed failed skipped) but the console shows $c_pass $c_fail $c_skip"
  fi
elif [ "$TIMED_OUT" = 1 ]; then
  EXTRA="SCENARIO vm-$KERNEL-finished: FAIL timed out after ${TIMEOUT}s (qemu killed)"
  status=2
else
  EXTRA="SCENARIO vm-$KERNEL-finished: FAIL guest stopped without its summary (qemu exit $QEMU_RC)"
  status=2
fi
if [ -n "$EXTRA" ]; then
  echo "$EXTRA"
  RESULTS=$(printf '%s\n%s' "$RESULTS" "$EXTRA" | sed '/^$/d')
  c_fail=$((c_fail + 1))
fi
passed=$c_pass failed=$c_fail skipped=$c_skip
[ "$status" != 0 ] || [ "$failed" = 0 ] || status=1
if [ "$status" = 2 ]; then
  echo "run_vm: last console lines:"
  tail -n 30 <<<"$CLEAN" | sed 's/^/  | /'
fi
if [ "$status" != 0 ] && [ -z "$LOGFILE" ] && [ "$KEEP" = 0 ]; then
  keep_log="${TMPDIR:-/tmp}/pb-vm-$KERNEL-$(date +%Y%m%d-%H%M%S).log"
  cp "$LOG" "$keep_log" && log "console log kept: $keep_log"
fi
if [ -n "$JUNIT" ]; then
  mkdir -p "$(dirname "$JUNIT")"
  { [ -z "$RESULTS" ] || echo "$RESULTS"; } |
    awk -v suite="vm-$KERNEL" -v kv="$PB_KV" -v secs="$T_VM" '
      function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); gsub(/"/, "\\&quot;", s)
                        gsub(/[\001-\010\013\014\016-\037]/, "?", s); return s }
      {
        name = $2; sub(/:$/, "", name); verdict = $3
        detail = $0; sub(/^SCENARIO [^ ]* [A-Z]+ ?/, "", detail)
        n++; names[n] = esc(name); verdicts[n] = verdict; details[n] = esc(detail)
        if (verdict == "FAIL") f++; else if (verdict == "SKIP") k++
      }
      END {
        print "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        printf "<testsuite name=\"%s\" tests=\"%d\" failures=\"%d\" skipped=\"%d\" time=\"%s\">\n", suite, n, f, k, secs
        printf "  <properties><property name=\"kernel\" value=\"%s\"/></properties>\n", esc(kv)
        for (i = 1; i <= n; i++) {
          printf "  <testcase classname=\"%s\" name=\"%s\">", suite, names[i]
          if (verdicts[i] == "FAIL") printf "<failure message=\"%s\"/>", details[i]
          else if (verdicts[i] == "SKIP") printf "<skipped message=\"%s\"/>", details[i]
          else printf "<system-out>%s</system-out>", details[i]
          print "</testcase>"
        }
        print "</testsuite>"
      }' >"$JUNIT"
fi
log "$KERNEL $PB_KV: fetch ${T_FETCH}s, initramfs ${T_INITRAMFS}s, vm ${T_VM}s" \
  "(/init at ${boot_at:-?}s, smoke ${smoke_at:-?}-${smoke_done:-?}s), total $((SECONDS - T_START))s"
echo "vm-$KERNEL: $passed passed, $failed failed, $skipped skipped"
exit "$status"
