// ErrnoToStatus: turns the errno of a failed system call into an absl::Status that names the call
// and the error, with the canonical code a caller can act on.
//
// Header-only. Thread-safe: the functions keep no state and use only thread-safe libc calls.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace pinbroker {

// The canonical code for `err`:
//   ENOENT                 NOT_FOUND
//   EACCES, EPERM          PERMISSION_DENIED
//   ENOMEM, EAGAIN         RESOURCE_EXHAUSTED (the kernel is short of something; EAGAIN from
//                          mlock/mmap/fork means exactly that, not "try again later")
//   EINVAL                 INVALID_ARGUMENT
//   others                 abseil's canonical errno table (absl::ErrnoToStatusCode): EEXIST is
//                          ALREADY_EXISTS, ENOSPC/EMFILE are RESOURCE_EXHAUSTED, ENOSYS is
//                          UNIMPLEMENTED, EIO is UNAVAILABLE, ..., and UNKNOWN when unlisted.
inline absl::StatusCode ErrnoToStatusCode(int err) {
  switch (err) {
    case ENOENT:
      return absl::StatusCode::kNotFound;
    case EACCES:
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case ENOMEM:
    case EAGAIN:
      return absl::StatusCode::kResourceExhausted;
    case EINVAL:
      return absl::StatusCode::kInvalidArgument;
    case 0:
      // A caller read errno where no call failed; that is a bug in the caller, not an OK status.
      return absl::StatusCode::kInternal;
    default:
      return absl::ErrnoToStatusCode(err);
  }
}

// "ENOENT (No such file or directory)" for 2; "errno 4242" when libc does not know `err`.
inline std::string ErrnoDescription(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  // Both return static strings (thread-safe), or nullptr for an unknown errno.
  const char* name = ::strerrorname_np(err);
  const char* desc = ::strerrordesc_np(err);
  if (name != nullptr && desc != nullptr) return absl::StrCat(name, " (", desc, ")");
  return absl::StrCat("errno ", err);
#else
  char buffer[256] = {};
  // XSI strerror_r returns int and fills `buffer`; GNU strerror_r returns the message.
  struct Result {
    static const char* Get(int /*rc*/, const char* buf) { return buf; }
    static const char* Get(const char* msg, const char* /*buf*/) { return msg; }
  };
  const char* desc = Result::Get(::strerror_r(err, buffer, sizeof(buffer)), buffer);
  if (desc == nullptr || *desc == '\0') return absl::StrCat("errno ", err);
  return absl::StrCat(desc, " (errno ", err, ")");
#endif
}

// A status for the system call described by `what` (for example "mmap of 4096 bytes") having
// failed with `err`: "<what> failed: ENOENT (No such file or directory)".
inline absl::Status ErrnoToStatus(int err, absl::string_view what) {
  return absl::Status(ErrnoToStatusCode(err),
                      absl::StrCat(what, " failed: ", ErrnoDescription(err)));
}

}  // namespace pinbroker
