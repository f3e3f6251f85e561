#include "pinning/guard/change_classifier.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/syscall.h>

#include "absl/strings/str_cat.h"

namespace pinbroker::guard {
namespace {

using Kind = ClassifiedChange::Kind;

// System calls that may raise a pre-content event but never change a file's layout: reads,
// writes, mappings and the asynchronous I/O that can only read or write.
bool IsPlainAccess(int64_t nr) {
  switch (nr) {
    case SYS_read:
    case SYS_write:
    case SYS_pread64:
    case SYS_pwrite64:
    case SYS_readv:
    case SYS_writev:
    case SYS_preadv:
    case SYS_pwritev:
    case SYS_preadv2:
    case SYS_pwritev2:
    case SYS_mmap:
    case SYS_sendfile:
    case SYS_splice:
    case SYS_copy_file_range:
    case SYS_io_submit:  // Linux AIO: read, write, fsync and poll only.
      return true;
    default:
      return false;
  }
}

const char* SyscallName(int64_t nr) {
  switch (nr) {
    case SYS_read:
      return "read(2)";
    case SYS_write:
      return "write(2)";
    case SYS_pread64:
      return "pread64(2)";
    case SYS_pwrite64:
      return "pwrite64(2)";
    case SYS_readv:
      return "readv(2)";
    case SYS_writev:
      return "writev(2)";
    case SYS_preadv:
      return "preadv(2)";
    case SYS_pwritev:
      return "pwritev(2)";
    case SYS_preadv2:
      return "preadv2(2)";
    case SYS_pwritev2:
      return "pwritev2(2)";
    case SYS_mmap:
      return "mmap(2)";
    case SYS_sendfile:
      return "sendfile(2)";
    case SYS_splice:
      return "splice(2)";
    case SYS_copy_file_range:
      return "copy_file_range(2)";
    case SYS_io_submit:
      return "io_submit(2)";
    case SYS_io_uring_enter:
      return "io_uring_enter(2)";
    default:
      return nullptr;
  }
}

std::string CallName(const CallerSyscall& call) {
  if (const char* name = SyscallName(call.nr)) return name;
  return absl::StrCat("system call ", call.nr);
}

ClassifiedChange Truncate(uint64_t new_size, std::string call) {
  ClassifiedChange c;
  c.kind = Kind::kTruncate;
  c.new_size = new_size;
  c.call = std::move(call);
  return c;
}

ClassifiedChange Fallocate(const CallerSyscall& call) {
  const uint64_t mode = call.args[1];
  ClassifiedChange c;
  c.offset = call.args[2];
  c.length = call.args[3];
  if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) {
    c.kind = Kind::kShift;
    c.call = (mode & FALLOC_FL_COLLAPSE_RANGE) ? "fallocate(2) COLLAPSE_RANGE"
                                               : "fallocate(2) INSERT_RANGE";
  } else if (mode & FALLOC_FL_PUNCH_HOLE) {
    c.kind = Kind::kPunch;
    c.call = "fallocate(2) PUNCH_HOLE";
  } else if (mode & FALLOC_FL_ZERO_RANGE) {
    c.kind = Kind::kPunch;
    c.call = "fallocate(2) ZERO_RANGE";
  } else if (mode & 0x40 /* FALLOC_FL_UNSHARE_RANGE: new blocks behind the range */) {
    c.kind = Kind::kPunch;
    c.call = "fallocate(2) UNSHARE_RANGE";
  } else {
    c.kind = Kind::kAccess;  // Allocation (mode 0 or KEEP_SIZE): nothing is freed.
    c.call = "fallocate(2)";
  }
  return c;
}

// The open(2)-family call `call` is: its name, and its flags (openat2's `open_flags`, read from
// the caller's memory, may be missing). Null name: not an open(2)-family call.
struct OpenCall {
  const char* name = nullptr;
  std::optional<uint64_t> flags;
};
OpenCall OpenCallOf(const CallerSyscall& call, std::optional<uint64_t> open_flags) {
  switch (call.nr) {
    case SYS_open:
      return {"open(2)", call.args[1]};
    case SYS_openat:
      return {"openat(2)", call.args[2]};
    case SYS_openat2:
      return {"openat2(2)", open_flags};
    default:
      return {};
  }
}

}  // namespace

ClassifiedChange ClassifyPreAccess(uint64_t offset, uint64_t count,
                                   const std::optional<CallerSyscall>& call) {
  if (call.has_value()) {
    switch (call->nr) {
      case SYS_ftruncate:
        return Truncate(call->args[1], "ftruncate(2)");
      case SYS_truncate:
        return Truncate(call->args[1], "truncate(2)");
      case SYS_fallocate:
        return Fallocate(*call);
      default:
        break;
    }
    if (IsPlainAccess(call->nr)) {
      ClassifiedChange c;
      c.kind = Kind::kAccess;
      c.offset = offset;
      c.length = count;
      c.call = CallName(*call);
      return c;
    }
  }
  // Unidentified (no /proc access, another pid namespace, io_uring, a 32-bit caller): only a
  // truncate to a page-aligned size raises an event with count 0, so that is safe to treat as
  // one; anything else might be a write and is let through, then checked (detect-after).
  if (count == 0) {
    return Truncate(offset, call.has_value() ? CallName(*call) : "unidentified caller");
  }
  ClassifiedChange c;
  c.kind = Kind::kUnknown;
  c.offset = offset;
  c.length = count;
  c.call = call.has_value() ? CallName(*call) : "unidentified caller";
  return c;
}

bool PathArgument(const CallerSyscall& call, int* path_index, int* dirfd_index) {
  switch (call.nr) {
    case SYS_open:
    case SYS_creat:
    case SYS_truncate:
      *path_index = 0;
      *dirfd_index = -1;
      return true;
    case SYS_openat:
    case SYS_openat2:
      *path_index = 1;
      *dirfd_index = 0;
      return true;
    default:
      return false;
  }
}

OpenIntent ClassifyOpen(const CallerSyscall& call, std::optional<uint64_t> open_flags) {
  if (call.nr == SYS_creat) return OpenIntent{OpenIntent::Kind::kTruncate, "creat(2)"};
  const auto [name, flags] = OpenCallOf(call, open_flags);
  if (name == nullptr) return OpenIntent{OpenIntent::Kind::kUnknown, CallName(call)};
  if (!flags.has_value()) return OpenIntent{OpenIntent::Kind::kUnknown, name};
  if (*flags & O_TRUNC) {
    return OpenIntent{
        OpenIntent::Kind::kTruncate,
        absl::StrCat(name, (*flags & O_ACCMODE) == O_RDONLY ? " O_RDONLY|O_TRUNC" : " O_TRUNC")};
  }
  if ((*flags & O_ACCMODE) != O_RDONLY) {
    return OpenIntent{OpenIntent::Kind::kWrite, absl::StrCat(name, " for writing")};
  }
  return OpenIntent{OpenIntent::Kind::kRead, absl::StrCat(name, " read-only")};
}

bool OpenFlagsFromMemory(const CallerSyscall& call) { return call.nr == SYS_openat2; }

ClassifiedChange ClassifyLeaseBreak(const CallerSyscall& call, std::optional<uint64_t> open_flags) {
  if (call.nr == SYS_truncate) return Truncate(call.args[1], "truncate(2)");
  if (call.nr == SYS_creat) return Truncate(0, "creat(2)");
  const auto [name, flags] = OpenCallOf(call, open_flags);
  ClassifiedChange c;
  if (!flags.has_value()) {
    c.kind = Kind::kUnknown;
    c.call = name != nullptr ? std::string(name) : CallName(call);
    return c;
  }
  if (*flags & O_TRUNC) return Truncate(0, absl::StrCat(name, " O_TRUNC"));
  c.kind = Kind::kAccess;  // An open for writing: the lease must go, the layout stays.
  c.call = absl::StrCat(name, " for writing");
  return c;
}

}  // namespace pinbroker::guard
