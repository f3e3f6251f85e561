#include "pinning/host_backend.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "pinning/page_range.h"

namespace pinbroker {
namespace {

// "lease 7 (owner 'job-3'): bytes [0, 12288) of file 8:1:1234", for messages.
std::string Describe(const PinSpec& spec) {
  return absl::StrCat("lease ", spec.lease, " (owner '", absl::CHexEscape(spec.owner),
                      "'): bytes [", spec.bytes.offset, ", ", spec.bytes.offset + spec.bytes.length,
                      ") of file ", spec.file != nullptr ? spec.file->id.ToString() : "?");
}

// "65536 bytes", "unlimited", or "unknown (getrlimit failed: ...)".
std::string MemlockLimitText(bool* unlimited) {
  *unlimited = false;
  struct rlimit limit;
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
    return absl::StrCat("unknown (getrlimit failed: ", ErrnoDescription(errno), ")");
  }
  if (limit.rlim_cur == RLIM_INFINITY) {
    *unlimited = true;
    return "unlimited";
  }
  return absl::StrCat(limit.rlim_cur, " bytes");
}

absl::Status ValidateSpec(const PinSpec& spec) {
  if (spec.fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("host backend: ", Describe(spec), ": no file descriptor given"));
  }
  if (spec.file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("host backend: lease ", spec.lease, ": PinSpec.file is not set"));
  }
  const uint64_t page = SystemPageSize();
  if (spec.bytes.length == 0 || spec.bytes.offset % page != 0 || spec.bytes.length % page != 0) {
    return absl::InvalidArgumentError(absl::StrCat("host backend: ", Describe(spec),
                                                   ": the range must be non-empty and "
                                                   "aligned to the ",
                                                   page, "-byte page size"));
  }
  uint64_t end;
  if (__builtin_add_overflow(spec.bytes.offset, spec.bytes.length, &end) ||
      end > static_cast<uint64_t>(std::numeric_limits<off_t>::max()) ||
      spec.bytes.length > std::numeric_limits<size_t>::max()) {
    return absl::OutOfRangeError(absl::StrCat("host backend: lease ", spec.lease, ": range at ",
                                              spec.bytes.offset, " of ", spec.bytes.length,
                                              " bytes cannot be mapped (too large)"));
  }

  // The descriptor must still be the inspected file, and the range must lie within its current
  // last page: mapping pages past EOF succeeds, but locking them fails (they cannot be faulted
  // in), which would otherwise be misreported as a memlock limit.
  struct stat st;
  if (::fstat(spec.fd, &st) != 0) {
    return ErrnoToStatus(
        errno, absl::StrCat("host backend: ", Describe(spec), ": fstat(fd ", spec.fd, ")"));
  }
  if (static_cast<uint64_t>(st.st_dev) != spec.file->id.dev ||
      static_cast<uint64_t>(st.st_ino) != spec.file->id.ino) {
    return absl::InvalidArgumentError(absl::StrCat(
        "host backend: ", Describe(spec), ": fd ", spec.fd, " refers to file ",
        FileId{.dev = static_cast<uint64_t>(st.st_dev), .ino = static_cast<uint64_t>(st.st_ino)}
            .ToString(),
        ", not the file described by PinSpec.file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t mappable = size % page == 0 ? size : size - size % page + page;
  if (end > mappable) {
    return absl::OutOfRangeError(absl::StrCat("host backend: ", Describe(spec),
                                              ": the range reaches past the end of the file (",
                                              size, " bytes); pin only pages the file has"));
  }
  return absl::OkStatus();
}

}  // namespace

HostBackend::~HostBackend() {
  absl::flat_hash_map<uint64_t, Mapping> mappings;
  {
    absl::MutexLock lock(&mu_);
    mappings.swap(mappings_);
    pinned_bytes_ = 0;
  }
  // munmap also unlocks. It cannot fail for a whole mapping of ours; if it did, there is nothing
  // better a destructor could do than say so and leave the mapping to process exit.
  for (const auto& [handle, m] : mappings) {
    if (::munmap(m.addr, m.length) != 0) {
      PB_LOG(ERROR) << "host backend: munmap of pin handle " << handle << " (" << m.length
                    << " bytes) failed at shutdown: " << ErrnoDescription(errno)
                    << "; it stays mapped until the process exits";
    }
  }
}

absl::StatusOr<BackendPin> HostBackend::Pin(const PinSpec& spec) {
  if (absl::Status s = ValidateSpec(spec); !s.ok()) return s;
  const size_t length = static_cast<size_t>(spec.bytes.length);
  const off_t offset = static_cast<off_t>(spec.bytes.offset);
  const bool write = spec.access == Access::kReadWrite;
  const int prot = PROT_READ | (write ? PROT_WRITE : 0);

  void* addr = MAP_FAILED;
  if (spec.file->dax && !MapSyncUnsupported(spec.file->id.dev)) {
    // A DAX file's pages are its blocks on the medium. MAP_SYNC makes the filesystem commit a
    // block's allocation metadata before the write fault that allocated it returns, so data stored
    // through the mapping is durable once flushed from the CPU caches, with no fsync/msync.
    // Filesystems that do not offer it refuse MAP_SHARED_VALIDATE | MAP_SYNC with EOPNOTSUPP (or
    // EINVAL on kernels that predate MAP_SHARED_VALIDATE); then the pin falls back to plain
    // MAP_SHARED, which keeps the pages just as resident and only loses that durability
    // guarantee. The refusal is remembered per filesystem (device), once the plain mapping has
    // worked, so later DAX pins there do not retry.
    addr = ::mmap(nullptr, length, prot, MAP_SHARED_VALIDATE | MAP_SYNC, spec.fd, offset);
    if (addr == MAP_FAILED && (errno == EOPNOTSUPP || errno == EINVAL)) {
      addr = ::mmap(nullptr, length, prot, MAP_SHARED, spec.fd, offset);
      if (addr != MAP_FAILED) {
        absl::MutexLock lock(&mu_);
        no_map_sync_devs_.insert(spec.file->id.dev);
      }
    }
  } else {
    addr = ::mmap(nullptr, length, prot, MAP_SHARED, spec.fd, offset);
  }
  if (addr == MAP_FAILED) {
    const int err = errno;
    const std::string what = absl::StrCat("host backend: ", Describe(spec), ": mmap");
    switch (err) {
      case EACCES:
        return absl::PermissionDeniedError(
            absl::StrCat(what, " refused ", write ? "read-write" : "read", " access: fd ", spec.fd,
                         " is not open for it (", ErrnoDescription(err), "); open the file ",
                         write ? "O_RDWR" : "for reading"));
      case ENODEV:
        return absl::FailedPreconditionError(
            absl::StrCat(what, ": the file's filesystem (", spec.file->fs_type,
                         ") does not support mmap, which host pins need"));
      case ENOMEM:
        return absl::ResourceExhaustedError(
            absl::StrCat(what, " of ", length, " bytes failed: ", ErrnoDescription(err),
                         "; the broker is out of address space or mappings (vm.max_map_count)"));
      default:
        return ErrnoToStatus(err, what);
    }
  }

  // The raw system call, not mlock(3): ASan and TSan intercept mlock() as a silent no-op (to keep
  // mlockall() off their shadow memory), which would make sanitizer builds hold nothing.
  if (::syscall(SYS_mlock, addr, length) != 0) {
    const int err = errno;
    ::munmap(addr, length);  // Cannot fail for the whole of a fresh mapping.
    if (err != ENOMEM && err != EAGAIN && err != EPERM) {
      return ErrnoToStatus(err, absl::StrCat("host backend: ", Describe(spec), ": mlock"));
    }
    bool unlimited = false;
    const std::string limit = MemlockLimitText(&unlimited);
    const uint64_t held = pinned_bytes();
    return absl::ResourceExhaustedError(absl::StrCat(
        "host backend: cannot lock ", length, " bytes in memory for ", Describe(spec),
        ": mlock failed: ", ErrnoDescription(err), ". RLIMIT_MEMLOCK soft limit is ", limit,
        " and this backend already holds ", held, " bytes locked; ",
        unlimited ? "the limit is not the cause, so the system is short of memory it can lock: "
                    "pin fewer bytes or free memory"
                  : "raise LimitMEMLOCK= in the unit or `ulimit -l`, or grant CAP_IPC_LOCK"));
  }
  // Keep pinned file data out of the broker's core dumps: it can be huge and it is not ours.
  // Purely advisory; a failure changes nothing about the pin.
  ::madvise(addr, length, MADV_DONTDUMP);

  absl::MutexLock lock(&mu_);
  const uint64_t handle = next_handle_++;
  mappings_.emplace(handle, Mapping{.addr = addr, .length = length});
  pinned_bytes_ += length;
  BackendPin pin;
  pin.handle = handle;
  pin.mode = RegistrationMode::kHost;
  return pin;
}

absl::Status HostBackend::Release(uint64_t handle) { return Unpin(handle, "release"); }

absl::Status HostBackend::Revoke(uint64_t handle) { return Unpin(handle, "revoke"); }

absl::Status HostBackend::Unpin(uint64_t handle, absl::string_view verb) {
  Mapping m;
  {
    absl::MutexLock lock(&mu_);
    auto it = mappings_.find(handle);
    if (it == mappings_.end()) {
      return absl::NotFoundError(absl::StrCat("host backend: cannot ", verb, " pin handle ", handle,
                                              ": no such pin (never pinned, or already released "
                                              "or revoked)"));
    }
    m = it->second;
    mappings_.erase(it);
    pinned_bytes_ -= m.length;
  }
  // munmap unlocks and unmaps in one step. A separate munlock first would only open a window in
  // which the pages are mapped but not locked, and leave a pin we still account for unlocked if
  // munmap then failed.
  if (::munmap(m.addr, m.length) != 0) {
    const int err = errno;
    // Still mapped: keep accounting for it so pinned_bytes() does not lie.
    absl::MutexLock lock(&mu_);
    mappings_.emplace(handle, m);
    pinned_bytes_ += m.length;
    return absl::InternalError(absl::StrCat(
        "host backend: cannot ", verb, " pin handle ", handle, ": munmap of ", m.length,
        " bytes failed: ", ErrnoDescription(err), "; the pin is still held"));
  }
  return absl::OkStatus();
}

bool HostBackend::MapSyncUnsupported(uint64_t dev) const {
  absl::MutexLock lock(&mu_);
  return no_map_sync_devs_.contains(dev);
}

uint64_t HostBackend::pinned_bytes() const {
  absl::MutexLock lock(&mu_);
  return pinned_bytes_;
}

uint64_t HostBackend::mapping_count() const {
  absl::MutexLock lock(&mu_);
  return mappings_.size();
}

absl::StatusOr<const void*> HostBackend::AddressForTesting(uint64_t handle) const {
  absl::MutexLock lock(&mu_);
  auto it = mappings_.find(handle);
  if (it == mappings_.end()) {
    return absl::NotFoundError(absl::StrCat("host backend: no pin with handle ", handle));
  }
  return static_cast<const void*>(it->second.addr);
}

}  // namespace pinbroker
