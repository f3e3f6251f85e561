// What a file's guard catches: from the mechanisms armed on it, the GuardReport DescribeFile
// shows (guard name, operations no armed mechanism intercepts). docs/GUARD.md has the matrix
// these strings come from, per kernel and filesystem, with the tests that demonstrate it.
//
// Pure; thread-safe.
#pragma once

#include "pinning/layout_guard.h"

namespace pinbroker::guard {

struct ArmedMechanisms {
  bool fanotify = false;   // FAN_PRE_ACCESS (pre-content) mark on the inode.
  bool open_perm = false;  // FAN_OPEN_PERM mark on the inode: O_TRUNC opens are held.
  bool lease = false;      // Read lease held (not being broken).
  // Someone (possibly the broker's own read-write pins) had the file open for writing when the
  // fanotify mark was placed: the kernel decides at open(2) whether a descriptor reports
  // pre-content events for fallocate, so punches through those descriptors are not caught.
  bool writers_predate_mark = true;
};

// Operation names used in GuardReport::unguarded_operations.
inline constexpr char kOpTruncate[] = "truncate(2)";
inline constexpr char kOpFtruncate[] = "ftruncate(2)";
inline constexpr char kOpPunch[] = "fallocate(2) PUNCH_HOLE";
inline constexpr char kOpPunchPreopened[] =
    "fallocate(2) PUNCH_HOLE on descriptors opened before the guard was armed";
inline constexpr char kOpPunchUnidentified[] =
    "fallocate(2) PUNCH_HOLE by callers the broker cannot identify (io_uring, other pid "
    "namespaces)";
inline constexpr char kOpOpenTrunc[] = "open(2) O_TRUNC";
inline constexpr char kOpOpenReadOnlyTrunc[] = "open(2) O_RDONLY|O_TRUNC";
// openat2(2) passes its flags in memory; the guard reads them after the kernel has copied them
// (OpenFlagsFromMemory), so a change in between goes unseen until the call returns.
inline constexpr char kOpOpenat2FlagsChanged[] =
    "openat2(2) O_TRUNC whose flags another thread of the caller clears during the call";

GuardReport ReportFor(const ArmedMechanisms& armed);

}  // namespace pinbroker::guard
