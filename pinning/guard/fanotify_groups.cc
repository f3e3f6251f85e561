#include "pinning/guard/fanotify_groups.h"

#include <fcntl.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "pinning/guard/fanotify_abi.h"

namespace pinbroker::guard {
namespace {

constexpr uint64_t kNotifyMask = FAN_ATTRIB | FAN_MODIFY | FAN_DELETE_SELF;

// Reads every queued event of the group `fd` (non-blocking) and calls on_event(metadata,
// event bytes) for each. `what` names the group in errors.
template <typename OnEvent>
absl::Status ReadQueuedEvents(int fd, const char* what, OnEvent on_event) {
  alignas(fanotify_event_metadata) char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return absl::OkStatus();
      return ErrnoToStatus(errno, absl::StrCat("read(", what, ")"));
    }
    if (n == 0) return absl::OkStatus();
    // Events with info records are padded to 4 bytes only, so the next one may be misaligned
    // for its metadata: each is copied out before it is read.
    for (size_t off = 0; off + sizeof(fanotify_event_metadata) <= static_cast<size_t>(n);) {
      fanotify_event_metadata m;
      std::memcpy(&m, buf + off, sizeof(m));
      if (m.event_len < sizeof(m) || off + m.event_len > static_cast<size_t>(n)) break;
      on_event(m, buf + off);
      off += m.event_len;
    }
  }
}

// Calls on_info(header, record, record_end) for each well-formed info record of event `m`,
// whose bytes (metadata first) start at `event`.
template <typename OnInfo>
void ForEachInfoRecord(const fanotify_event_metadata& m, const char* event, OnInfo on_info) {
  const char* info = event + m.metadata_len;
  const char* end = event + m.event_len;
  while (info + sizeof(fanotify_event_info_header) <= end) {
    fanotify_event_info_header hdr;
    std::memcpy(&hdr, info, sizeof(hdr));
    if (hdr.len < sizeof(hdr) || info + hdr.len > end) break;
    on_info(hdr, info, info + hdr.len);
    info += hdr.len;
  }
}

absl::StatusOr<ScopedFd> Init(unsigned int flags, unsigned int event_flags, const char* what) {
  ScopedFd fd(::fanotify_init(flags, event_flags));
  if (fd.valid()) return fd;
  const int err = errno;
  if (err == EPERM) {
    return absl::PermissionDeniedError(
        absl::StrCat("fanotify_init(", what, "): needs CAP_SYS_ADMIN (run pinbrokerd as root)"));
  }
  if (err == ENOSYS) {
    return absl::UnimplementedError("this kernel has no fanotify (CONFIG_FANOTIFY)");
  }
  if (err == EINVAL) {
    return absl::UnimplementedError(
        absl::StrCat("fanotify_init(", what, "): flags not supported by this kernel"));
  }
  return ErrnoToStatus(err, absl::StrCat("fanotify_init(", what, ")"));
}

std::string Bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

}  // namespace

absl::StatusOr<std::unique_ptr<PermissionGroup>> PermissionGroup::Open() {
  absl::StatusOr<ScopedFd> fd = Init(
      FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_TID | FAN_UNLIMITED_QUEUE,
      O_RDONLY | O_LARGEFILE | O_CLOEXEC, "pre-content");
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<PermissionGroup>(new PermissionGroup(*std::move(fd)));
}

absl::Status PermissionGroup::Mark(int file_fd, bool pre_content) {
  const uint64_t mask = FAN_OPEN_PERM | (pre_content ? FAN_PRE_ACCESS : 0);
  if (::fanotify_mark(fd_.get(), FAN_MARK_ADD | FAN_MARK_INODE, mask, file_fd, nullptr) == 0) {
    return absl::OkStatus();
  }
  const int err = errno;
  if (err == EINVAL && pre_content) {
    return absl::UnimplementedError(
        "this kernel has no fanotify pre-content events (FAN_PRE_ACCESS needs Linux >= 6.14)");
  }
  if (err == EOPNOTSUPP && pre_content) {
    return absl::FailedPreconditionError(
        "this filesystem does not offer fanotify pre-content events (EOPNOTSUPP)");
  }
  return ErrnoToStatus(err, pre_content ? "fanotify_mark(FAN_OPEN_PERM | FAN_PRE_ACCESS)"
                                        : "fanotify_mark(FAN_OPEN_PERM)");
}

void PermissionGroup::Unmark(int file_fd) {
  ::fanotify_mark(fd_.get(), FAN_MARK_REMOVE | FAN_MARK_INODE, FAN_OPEN_PERM | FAN_PRE_ACCESS,
                  file_fd, nullptr);
}

absl::StatusOr<std::vector<PermissionGroup::Event>> PermissionGroup::ReadEvents() {
  std::vector<Event> out;
  absl::Status read = ReadQueuedEvents(
      fd_.get(), "fanotify pre-content group",
      [&](const fanotify_event_metadata& m, const char* bytes) {
        Event event;
        event.fd.reset(m.fd);
        event.tid = m.pid;
        event.mask = m.mask;
        ForEachInfoRecord(
            m, bytes, [&](const fanotify_event_info_header& hdr, const char* info, const char*) {
              if (hdr.info_type == FAN_EVENT_INFO_TYPE_RANGE &&
                  hdr.len >= sizeof(fanotify_event_info_range)) {
                fanotify_event_info_range range;
                std::memcpy(&range, info, sizeof(range));
                event.has_range = true;
                event.offset = range.offset;
                event.count = range.count;
              }
            });
        out.push_back(std::move(event));
      });
  if (!read.ok()) return read;
  return out;
}

absl::Status PermissionGroup::Respond(int event_fd, uint32_t response) {
  struct fanotify_response r = {event_fd, response};
  for (;;) {
    if (::write(fd_.get(), &r, sizeof(r)) == static_cast<ssize_t>(sizeof(r))) {
      return absl::OkStatus();
    }
    if (errno != EINTR) return ErrnoToStatus(errno, "answering a fanotify permission event");
  }
}

absl::Status PermissionGroup::Allow(int event_fd) { return Respond(event_fd, FAN_ALLOW); }

absl::StatusOr<int> PermissionGroup::Deny(int event_fd, int err) {
  if (errno_responses_.load()) {
    const absl::Status sent = Respond(event_fd, FAN_DENY_ERRNO(static_cast<uint32_t>(err)));
    if (sent.ok()) return err;
    if (!absl::IsInvalidArgument(sent)) return sent;
    errno_responses_ = false;  // Before 6.14: no errno in responses.
  }
  const absl::Status sent = Respond(event_fd, FAN_DENY);
  if (!sent.ok()) return sent;
  return EPERM;
}

absl::StatusOr<std::unique_ptr<NotifyGroup>> NotifyGroup::Open() {
  absl::StatusOr<ScopedFd> fd =
      Init(FAN_CLASS_NOTIF | FAN_REPORT_FID | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE,
           O_RDONLY | O_CLOEXEC, "notification");
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<NotifyGroup>(new NotifyGroup(*std::move(fd)));
}

absl::Status NotifyGroup::Mark(int file_fd) {
  if (::fanotify_mark(fd_.get(), FAN_MARK_ADD | FAN_MARK_INODE, kNotifyMask, file_fd, nullptr) ==
      0) {
    return absl::OkStatus();
  }
  const int err = errno;
  if (err == EOPNOTSUPP || err == EXDEV || err == ENODEV) {
    return absl::FailedPreconditionError("this filesystem cannot report file handles to fanotify");
  }
  return ErrnoToStatus(err, "fanotify_mark(FAN_ATTRIB|FAN_MODIFY)");
}

void NotifyGroup::Unmark(int file_fd) {
  ::fanotify_mark(fd_.get(), FAN_MARK_REMOVE | FAN_MARK_INODE, kNotifyMask, file_fd, nullptr);
}

absl::StatusOr<std::vector<NotifyGroup::Event>> NotifyGroup::ReadEvents() {
  std::vector<Event> out;
  absl::Status read = ReadQueuedEvents(
      fd_.get(), "fanotify notification group",
      [&](const fanotify_event_metadata& m, const char* bytes) {
        Event event;
        event.mask = m.mask;
        ForEachInfoRecord(
            m, bytes,
            [&](const fanotify_event_info_header& hdr, const char* info, const char* end) {
              if (hdr.info_type != FAN_EVENT_INFO_TYPE_FID) return;
              // header, fsid, then a struct file_handle.
              const char* p = info + sizeof(hdr);
              const size_t fsid_len = sizeof(__kernel_fsid_t);
              if (p + fsid_len + sizeof(file_handle) > end) return;
              file_handle fh;
              std::memcpy(&fh, p + fsid_len, sizeof(fh));
              const char* bytes = p + fsid_len + sizeof(file_handle);
              if (bytes + fh.handle_bytes <= end) {
                event.key = absl::StrCat(Bytes(p, fsid_len), Bytes(&fh.handle_type, sizeof(int)),
                                         Bytes(bytes, fh.handle_bytes));
              }
            });
        out.push_back(std::move(event));
      });
  if (!read.ok()) return read;
  return out;
}

absl::StatusOr<std::string> NotifyGroup::KeyOf(int fd) {
  struct statfs fs;
  if (::fstatfs(fd, &fs) != 0) return ErrnoToStatus(errno, "fstatfs");
  alignas(file_handle) char storage[sizeof(file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<file_handle*>(storage);
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (::name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) != 0) {
    return ErrnoToStatus(errno, "name_to_handle_at");
  }
  return absl::StrCat(Bytes(&fs.f_fsid, sizeof(fs.f_fsid)), Bytes(&fh->handle_type, sizeof(int)),
                      Bytes(fh->f_handle, fh->handle_bytes));
}

}  // namespace pinbroker::guard
