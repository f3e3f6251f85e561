// Change classifier: decides what a caller held by the guard is about to do to a file: an
// ordinary access (read, write, mmap, allocation) that never needs a lease recalled, or a
// layout change (truncate, hole punch, range shift) that goes through the LayoutCoordinator.
//
// A fanotify pre-content event carries only a byte range, and a hole punch looks exactly like
// a write of the same range (a truncate to a page-aligned size is the event with count 0; an
// unaligned truncate reports the page holding the new end of file with count = page size, so
// it looks like a one-page write). The reliable witness is the caller's own system call: it
// sleeps inside it until the guard answers, so /proc/<tid>/syscall shows its number and raw
// arguments (fallocate's mode, truncate's length, open's flags). See docs/GUARD.md for what
// happens when the caller cannot be read.
//
// Pure functions over plain values; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "pinning/guard/caller.h"

namespace pinbroker::guard {

struct ClassifiedChange {
  enum class Kind {
    kAccess,    // read, write, mmap, fallocate that only allocates: never a layout change.
    kTruncate,  // size becomes `new_size`.
    kPunch,     // [offset, offset + length) loses its blocks (punch, zero range, unshare).
    kShift,     // everything from `offset` to EOF moves (collapse or insert range).
    kUnknown,   // could be a write or a punch; allowed and checked afterwards.
  };
  Kind kind = Kind::kUnknown;
  uint64_t new_size = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  // The system call, for logs and recall reasons: "ftruncate(2)", "fallocate(2) PUNCH_HOLE",
  // "pwrite64(2)", "open(2) O_TRUNC", "unidentified caller".
  std::string call;

  bool changes_layout() const {
    return kind == Kind::kTruncate || kind == Kind::kPunch || kind == Kind::kShift;
  }
};

// A FAN_PRE_ACCESS event for bytes [offset, offset + count), from a caller whose system call
// is `call` (nullopt when it could not be read).
ClassifiedChange ClassifyPreAccess(uint64_t offset, uint64_t count,
                                   const std::optional<CallerSyscall>& call);

// A thread blocked breaking a file lease, in system call `call`. `open_flags` are the flags of
// an openat2(2) (read from the caller's memory; nullopt if unreadable). Returns kAccess for an
// open for writing without O_TRUNC, kTruncate for truncate(2), open/openat/openat2 with
// O_TRUNC and creat(2), and kUnknown otherwise.
ClassifiedChange ClassifyLeaseBreak(const CallerSyscall& call,
                                    std::optional<uint64_t> open_flags = std::nullopt);

// What an open(2) of a guarded file (a FAN_OPEN_PERM event, before the open takes effect) is
// about to do, from the caller's system call: open/openat/creat flags are arguments, openat2's
// are in memory (`open_flags`, nullopt if unreadable).
struct OpenIntent {
  enum class Kind {
    kRead,      // Read-only, no O_TRUNC.
    kWrite,     // For writing, no O_TRUNC: a file lease must go, the layout stays.
    kTruncate,  // O_TRUNC (read-only included) or creat(2): truncates to 0 once open.
    kUnknown,   // Not an open the guard can read (io_uring, unreadable caller).
  };
  Kind kind = Kind::kUnknown;
  std::string call;  // "openat(2) O_TRUNC", "open(2) for writing", ...
};
OpenIntent ClassifyOpen(const CallerSyscall& call, std::optional<uint64_t> open_flags);

// Whether the call's open flags were read from the caller's memory (openat2(2)'s struct
// open_how), not from its arguments. The kernel copied them at entry; another thread of the
// caller may have changed them since, so an open let through on them (no O_TRUNC seen) must be
// checked once the call returns: it may have truncated after all.
bool OpenFlagsFromMemory(const CallerSyscall& call);

// For a lease breaker: the index of the argument holding its path and its dirfd (-1: none,
// AT_FDCWD implied); false if the call takes no path.
bool PathArgument(const CallerSyscall& call, int* path_index, int* dirfd_index);

}  // namespace pinbroker::guard
