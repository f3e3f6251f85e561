// One room, over 500 lines on purpose: a file's shared mapping, the page-counted mlock ranges
// inside it and its share of the VMA budget are one record under the mapping's mutex; every pin
// and release changes them together, and splitting them would split that invariant.
#include "pinning/host_backend.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

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

// On success, *mappable is the file's size rounded up to whole pages.
absl::Status ValidateSpec(const PinSpec& spec, uint64_t* mappable) {
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
  *mappable = size % page == 0 ? size : size - size % page + page;
  if (end > *mappable) {
    return absl::OutOfRangeError(absl::StrCat("host backend: ", Describe(spec),
                                              ": the range reaches past the end of the file (",
                                              size, " bytes); pin only pages the file has"));
  }
  // A mapping the backend already holds may serve the pin, so the descriptor's access mode is
  // checked here rather than left to mmap.
  const int flags = ::fcntl(spec.fd, F_GETFL);
  if (flags < 0) {
    return ErrnoToStatus(
        errno, absl::StrCat("host backend: ", Describe(spec), ": fcntl(fd ", spec.fd, ")"));
  }
  const int mode = flags & O_ACCMODE;
  const bool write = spec.access == Access::kReadWrite;
  if ((write && mode != O_RDWR) || (!write && mode == O_WRONLY)) {
    return absl::PermissionDeniedError(absl::StrCat("host backend: ", Describe(spec), ": refused ",
                                                    write ? "read-write" : "read", " access: fd ",
                                                    spec.fd, " is not open for it; open the file ",
                                                    write ? "O_RDWR" : "for reading"));
  }
  return absl::OkStatus();
}

// The most VMAs a fresh backend allows itself: a quarter of the kernel's per-process limit.
uint64_t ReadMaxMapCount() {
  std::FILE* f = std::fopen("/proc/sys/vm/max_map_count", "re");
  unsigned long long value = 0;
  const bool ok = f != nullptr && std::fscanf(f, "%llu", &value) == 1 && value > 0;
  if (f != nullptr) std::fclose(f);
  return ok ? value : 65530;
}

// "uid 1001", or "the unnamed holder" for pins that name none.
std::string HolderName(absl::string_view holder) {
  return holder.empty() ? "the unnamed holder" : absl::CHexEscape(holder);
}

}  // namespace

// --- CountedRanges ----------------------------------------------------------------------------

void CountedRanges::SplitAt(uint64_t at) {
  auto it = segments_.upper_bound(at);
  if (it == segments_.begin()) return;
  --it;
  if (it->first < at && at < it->second.end) {
    const Segment tail{.end = it->second.end, .count = it->second.count};
    it->second.end = at;
    segments_.emplace_hint(std::next(it), at, tail);
  }
}

bool CountedRanges::RunEndsAt(uint64_t at) const {
  auto it = segments_.lower_bound(at);
  if (it == segments_.begin()) return false;
  --it;
  return it->second.end == at;
}

bool CountedRanges::RunStartsAt(uint64_t at) const { return segments_.contains(at); }

std::vector<ByteRange> CountedRanges::Uncovered(uint64_t begin, uint64_t end) const {
  std::vector<ByteRange> out;
  uint64_t cur = begin;
  auto it = segments_.upper_bound(begin);
  if (it != segments_.begin()) cur = std::max(cur, std::prev(it)->second.end);
  for (; cur < end; ++it) {
    if (it == segments_.end() || it->first >= end) {
      out.push_back(ByteRange{.offset = cur, .length = end - cur});
      break;
    }
    if (it->first > cur) out.push_back(ByteRange{.offset = cur, .length = it->first - cur});
    cur = std::max(cur, it->second.end);
  }
  return out;
}

int64_t CountedRanges::RunDeltaOfAdd(uint64_t begin, uint64_t end) const {
  int64_t delta = 0;
  for (const ByteRange& gap : Uncovered(begin, end)) {
    delta += 1 - (RunEndsAt(gap.offset) ? 1 : 0) - (RunStartsAt(gap.offset + gap.length) ? 1 : 0);
  }
  return delta;
}

void CountedRanges::Add(uint64_t begin, uint64_t end) {
  SplitAt(begin);
  SplitAt(end);
  uint64_t cur = begin;
  auto it = segments_.lower_bound(begin);
  while (cur < end) {
    if (it != segments_.end() && it->first == cur) {
      ++it->second.count;
      cur = it->second.end;
      ++it;
      continue;
    }
    const uint64_t gap_end = (it != segments_.end() && it->first < end) ? it->first : end;
    segments_.emplace_hint(it, cur, Segment{.end = gap_end, .count = 1});
    cur = gap_end;
  }
}

std::vector<ByteRange> CountedRanges::Remove(uint64_t begin, uint64_t end, int64_t* run_delta) {
  SplitAt(begin);
  SplitAt(end);
  std::vector<ByteRange> freed;
  for (auto it = segments_.lower_bound(begin); it != segments_.end() && it->first < end;) {
    if (--it->second.count > 0) {
      ++it;
      continue;
    }
    if (!freed.empty() && freed.back().offset + freed.back().length == it->first) {
      freed.back().length += it->second.end - it->first;
    } else {
      freed.push_back(ByteRange{.offset = it->first, .length = it->second.end - it->first});
    }
    it = segments_.erase(it);
  }
  *run_delta = 0;
  for (const ByteRange& piece : freed) {
    *run_delta +=
        -1 + (RunEndsAt(piece.offset) ? 1 : 0) + (RunStartsAt(piece.offset + piece.length) ? 1 : 0);
  }
  return freed;
}

// --- HostBackend ------------------------------------------------------------------------------

uint64_t HostBackend::DefaultMaxVmas() { return ReadMaxMapCount() / 4; }

HostBackend::HostBackend(const Options& options)
    : max_vmas_(options.max_vmas != 0 ? options.max_vmas : DefaultMaxVmas()),
      max_vmas_per_holder_(options.max_vmas_per_holder != 0
                               ? options.max_vmas_per_holder
                               : std::max<uint64_t>(1, max_vmas_ / 2)) {}

HostBackend::~HostBackend() {
  absl::flat_hash_map<FileId, FileState> files;
  {
    absl::MutexLock lock(&mu_);
    files.swap(files_);
    leases_.clear();
    pinned_bytes_ = 0;
    vma_total_ = 0;
    mapping_count_ = 0;
    holder_vmas_.clear();
  }
  // munmap also unlocks. It cannot fail for a whole mapping of ours; if it did, there is nothing
  // better a destructor could do than say so and leave the mapping to process exit.
  for (const auto& [id, state] : files) {
    for (const std::shared_ptr<Mapping>& m : state.mappings) {
      absl::MutexLock lock(&m->mu);
      if (m->dead) continue;
      m->dead = true;
      if (::munmap(m->addr, m->length) != 0) {
        PB_LOG(ERROR) << "host backend: munmap of file " << id.ToString() << " (" << m->length
                      << " bytes) failed at shutdown: " << ErrnoDescription(errno)
                      << "; it stays mapped until the process exits";
      }
    }
  }
}

std::shared_ptr<HostBackend::Mapping> HostBackend::FindMapping(const FileId& file, uint64_t end,
                                                               bool write) const {
  auto it = files_.find(file);
  if (it == files_.end()) return nullptr;
  // The newest (largest) fitting mapping, so leases gather in one as the file grows.
  for (auto m = it->second.mappings.rbegin(); m != it->second.mappings.rend(); ++m) {
    if ((*m)->length >= end && (!write || (*m)->writable)) return *m;
  }
  return nullptr;
}

absl::StatusOr<std::shared_ptr<HostBackend::Mapping>> HostBackend::MapFile(const PinSpec& spec,
                                                                           uint64_t length) {
  const bool write = spec.access == Access::kReadWrite;
  const int prot = PROT_READ | (write ? PROT_WRITE : 0);
  void* addr = MAP_FAILED;
  if (spec.file->dax && !MapSyncUnsupported(spec.file->id.dev)) {
    // A DAX file's pages are its blocks on the medium. MAP_SYNC makes the filesystem commit a
    // block's allocation metadata before the write fault that allocated it returns, so data stored
    // through the mapping is durable once flushed from the CPU caches, with no fsync/msync.
    // Filesystems that do not offer it refuse MAP_SHARED_VALIDATE | MAP_SYNC with EOPNOTSUPP (or
    // EINVAL on kernels that predate MAP_SHARED_VALIDATE); then the mapping falls back to plain
    // MAP_SHARED, which keeps the pages just as resident and only loses that durability
    // guarantee. The refusal is remembered per filesystem (device), once the plain mapping has
    // worked, so later DAX mappings there do not retry.
    addr = ::mmap(nullptr, length, prot, MAP_SHARED_VALIDATE | MAP_SYNC, spec.fd, 0);
    if (addr == MAP_FAILED && (errno == EOPNOTSUPP || errno == EINVAL)) {
      addr = ::mmap(nullptr, length, prot, MAP_SHARED, spec.fd, 0);
      if (addr != MAP_FAILED) {
        absl::MutexLock lock(&mu_);
        no_map_sync_devs_.insert(spec.file->id.dev);
      }
    }
  } else {
    addr = ::mmap(nullptr, length, prot, MAP_SHARED, spec.fd, 0);
  }
  if (addr == MAP_FAILED) {
    const int err = errno;
    const std::string what =
        absl::StrCat("host backend: ", Describe(spec), ": mmap of ", length, " bytes of the file");
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
            absl::StrCat(what, " failed: ", ErrnoDescription(err),
                         "; the broker is out of address space or mappings (vm.max_map_count)"));
      default:
        return ErrnoToStatus(err, what);
    }
  }
  // Keep pinned file data out of the broker's core dumps: it can be huge and it is not ours.
  // Purely advisory; a failure changes nothing about the pins.
  ::madvise(addr, length, MADV_DONTDUMP);
  return std::make_shared<Mapping>(spec.file->id, addr, length, write);
}

void HostBackend::DropMapping(Mapping& m) {
  m.dead = true;
  // Cannot fail for the whole of a mapping of ours; if it did, the address space stays taken
  // until exit, but nothing refers to it any more.
  if (::munmap(m.addr, m.length) != 0) {
    PB_LOG(ERROR) << "host backend: munmap of file " << m.file.ToString() << " (" << m.length
                  << " bytes) failed: " << ErrnoDescription(errno);
  }
  absl::MutexLock lock(&mu_);
  vma_total_ -= m.vmas;
  --mapping_count_;
  auto it = files_.find(m.file);
  if (it == files_.end()) return;
  auto& list = it->second.mappings;
  list.erase(std::remove_if(list.begin(), list.end(),
                            [&m](const std::shared_ptr<Mapping>& p) { return p.get() == &m; }),
             list.end());
  if (list.empty() && it->second.held.empty()) files_.erase(it);
}

absl::Status HostBackend::VmaLimitError(const PinSpec& spec, uint64_t total, uint64_t more) const {
  return absl::ResourceExhaustedError(absl::StrCat(
      "host backend: cannot pin ", Describe(spec), ": it would take the broker's mappings to ",
      total + more, " VMAs, past the host backend's limit of ", max_vmas_,
      " (max_vmas_total; a quarter of vm.max_map_count by default); end other leases, pin fewer "
      "separate ranges, or raise vm.max_map_count"));
}

absl::Status HostBackend::HolderShareError(const PinSpec& spec, uint64_t used,
                                           uint64_t more) const {
  return absl::ResourceExhaustedError(absl::StrCat(
      "host backend: cannot pin ", Describe(spec), ": ", HolderName(spec.holder), " holds ", used,
      " VMAs of host pins (1 per file it pins in, 2 per distinct range) and this pin needs ", more,
      " more; its share max_vmas is ", max_vmas_per_holder_, " of the host backend's limit of ",
      max_vmas_, " (max_vmas_total); release some of its leases, or pin fewer, larger ranges"));
}

void HostBackend::RefundLocked(absl::string_view holder, uint64_t n) {
  if (n == 0) return;
  auto it = holder_vmas_.find(holder);
  if (it == holder_vmas_.end()) return;
  it->second -= std::min(it->second, n);
  if (it->second == 0) holder_vmas_.erase(it);
}

absl::StatusOr<BackendPin> HostBackend::Pin(const PinSpec& spec) {
  uint64_t mappable = 0;
  if (absl::Status s = ValidateSpec(spec, &mappable); !s.ok()) return s;
  const bool write = spec.access == Access::kReadWrite;
  const uint64_t begin = spec.bytes.offset;
  const uint64_t end = spec.bytes.offset + spec.bytes.length;

  // A mapping found here can die (its last lease ends) before its mutex is taken; then look again.
  for (;;) {
    std::shared_ptr<Mapping> m;
    {
      absl::MutexLock lock(&mu_);
      m = FindMapping(spec.file->id, end, write);
      if (m == nullptr) {
        // A lease in a new mapping costs its holder 3 (see the header): refuse before mapping.
        auto used = holder_vmas_.find(spec.holder);
        const uint64_t held = used == holder_vmas_.end() ? 0 : used->second;
        if (held + 3 > max_vmas_per_holder_) return HolderShareError(spec, held, 3);
        if (vma_total_ + 1 > max_vmas_) return VmaLimitError(spec, vma_total_, 1);
        ++vma_total_;
        ++mapping_count_;
      }
    }
    if (m == nullptr) {
      absl::StatusOr<std::shared_ptr<Mapping>> made = MapFile(spec, mappable);
      absl::MutexLock lock(&mu_);
      if (!made.ok()) {
        --vma_total_;
        --mapping_count_;
        return made.status();
      }
      m = *std::move(made);
      files_[spec.file->id].mappings.push_back(m);
    }

    absl::MutexLock map_lock(&m->mu);
    if (m->dead) continue;
    const std::vector<ByteRange> gaps = m->locked.Uncovered(begin, end);
    const int64_t run_delta = m->locked.RunDeltaOfAdd(begin, end);
    const int64_t vma_delta = 2 * run_delta;
    // The holder's charge: 1 if it has no lease in this mapping yet, 2 if it holds no lease of
    // exactly this range in it.
    auto holder_here = m->holders.find(spec.holder);
    const bool new_user = holder_here == m->holders.end();
    const bool new_range = new_user || !holder_here->second.ranges.contains({begin, end});
    const uint64_t charge = (new_user ? 1 : 0) + (new_range ? 2 : 0);
    absl::Status refused;
    {
      absl::MutexLock lock(&mu_);
      auto used = holder_vmas_.find(spec.holder);
      const uint64_t held = used == holder_vmas_.end() ? 0 : used->second;
      if (held + charge > max_vmas_per_holder_) {
        refused = HolderShareError(spec, held, charge);
      } else if (vma_delta > 0 && vma_total_ + static_cast<uint64_t>(vma_delta) > max_vmas_) {
        refused = VmaLimitError(spec, vma_total_, static_cast<uint64_t>(vma_delta));
      } else {
        vma_total_ += vma_delta;
        if (charge > 0) holder_vmas_[spec.holder] += charge;
      }
    }
    if (!refused.ok()) {
      if (m->leases == 0) DropMapping(*m);
      return refused;
    }

    // The raw system call, not mlock(3): ASan and TSan intercept mlock() as a silent no-op (to
    // keep mlockall() off their shadow memory), which would make sanitizer builds hold nothing.
    uint8_t* const base = static_cast<uint8_t*>(m->addr);
    for (size_t i = 0; i < gaps.size(); ++i) {
      if (::syscall(SYS_mlock, base + gaps[i].offset, gaps[i].length) == 0) continue;
      const int err = errno;
      for (size_t j = 0; j < i; ++j) {
        ::syscall(SYS_munlock, base + gaps[j].offset, gaps[j].length);
      }
      {
        absl::MutexLock lock(&mu_);
        vma_total_ -= vma_delta;
        RefundLocked(spec.holder, charge);
      }
      if (m->leases == 0) DropMapping(*m);
      if (err != ENOMEM && err != EAGAIN && err != EPERM) {
        return ErrnoToStatus(err, absl::StrCat("host backend: ", Describe(spec), ": mlock"));
      }
      bool unlimited = false;
      const std::string limit = MemlockLimitText(&unlimited);
      const uint64_t held = pinned_bytes();
      return absl::ResourceExhaustedError(absl::StrCat(
          "host backend: cannot lock ", spec.bytes.length, " bytes in memory for ", Describe(spec),
          ": mlock failed: ", ErrnoDescription(err), ". RLIMIT_MEMLOCK soft limit is ", limit,
          " and this backend already holds ", held, " bytes locked; ",
          unlimited ? "the limit is not the cause, so the system is short of memory it can lock: "
                      "pin fewer bytes or free memory"
                    : "raise LimitMEMLOCK= in the unit or `ulimit -l`, or grant CAP_IPC_LOCK"));
    }
    m->locked.Add(begin, end);
    m->vmas += vma_delta;
    ++m->leases;
    if (new_user) holder_here = m->holders.try_emplace(std::string(spec.holder)).first;
    Mapping::HolderLeases& mine = holder_here->second;
    ++mine.leases;
    ++mine.ranges[{begin, end}];
    const std::string* const holder = &holder_here->first;

    absl::MutexLock lock(&mu_);
    FileState& state = files_[spec.file->id];
    for (const ByteRange& piece : state.held.Uncovered(begin, end)) pinned_bytes_ += piece.length;
    state.held.Add(begin, end);
    const uint64_t handle = next_handle_++;
    leases_.emplace(handle, Lease{.mapping = std::move(m), .bytes = spec.bytes, .holder = holder});
    BackendPin pin;
    pin.handle = handle;
    pin.mode = RegistrationMode::kHost;
    return pin;
  }
}

absl::Status HostBackend::Release(uint64_t handle) { return Unpin(handle, "release"); }

absl::Status HostBackend::Revoke(uint64_t handle) { return Unpin(handle, "revoke"); }

absl::Status HostBackend::Unpin(uint64_t handle, absl::string_view verb) {
  Lease lease;
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(handle);
    if (it == leases_.end()) {
      return absl::NotFoundError(absl::StrCat("host backend: cannot ", verb, " pin handle ", handle,
                                              ": no such pin (never pinned, or already released "
                                              "or revoked)"));
    }
    lease = std::move(it->second);
    leases_.erase(it);
    auto file = files_.find(lease.mapping->file);
    if (file != files_.end()) {
      int64_t ignored = 0;
      for (const ByteRange& piece : file->second.held.Remove(
               lease.bytes.offset, lease.bytes.offset + lease.bytes.length, &ignored)) {
        pinned_bytes_ -= piece.length;
      }
    }
  }
  Mapping& m = *lease.mapping;
  absl::MutexLock map_lock(&m.mu);
  int64_t run_delta = 0;
  const uint64_t begin = lease.bytes.offset;
  const uint64_t end = lease.bytes.offset + lease.bytes.length;
  const std::vector<ByteRange> freed = m.locked.Remove(begin, end, &run_delta);
  --m.leases;
  // What the holder was charged for this range and mapping comes back with its last lease on
  // them.
  uint64_t refund = 0;
  absl::string_view holder = *lease.holder;
  std::string last_holder;  // Keeps the name when the holder's node goes with its last lease.
  if (auto mine = m.holders.find(holder); mine != m.holders.end()) {
    auto range = mine->second.ranges.find({begin, end});
    if (range != mine->second.ranges.end() && --range->second == 0) {
      mine->second.ranges.erase(range);
      refund += 2;
    }
    if (--mine->second.leases == 0) {
      last_holder = std::move(m.holders.extract(mine).key());
      holder = last_holder;
      refund += 1;
    }
  }
  if (m.leases == 0) {
    DropMapping(m);  // Unlocks whatever is still locked, with no munlock first.
    absl::MutexLock lock(&mu_);
    RefundLocked(holder, refund);
    return absl::OkStatus();
  }
  // Unlocking pages leaves them mapped: no TLB shootdown. It cannot fail for pages of a mapping
  // of ours; if it did, the pages stay resident until the mapping goes, which is only wasteful.
  for (const ByteRange& piece : freed) {
    if (::syscall(SYS_munlock, static_cast<uint8_t*>(m.addr) + piece.offset, piece.length) != 0) {
      PB_LOG(WARNING) << "host backend: munlock of " << piece.length << " bytes of file "
                      << m.file.ToString() << " failed: " << ErrnoDescription(errno)
                      << "; they stay resident until the file's mapping goes";
    }
  }
  m.vmas += 2 * run_delta;
  absl::MutexLock lock(&mu_);
  vma_total_ += 2 * run_delta;
  RefundLocked(holder, refund);
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
  return mapping_count_;
}

uint64_t HostBackend::lease_count() const {
  absl::MutexLock lock(&mu_);
  return leases_.size();
}

uint64_t HostBackend::vma_estimate() const {
  absl::MutexLock lock(&mu_);
  return vma_total_;
}

uint64_t HostBackend::holder_vmas(absl::string_view holder) const {
  absl::MutexLock lock(&mu_);
  auto it = holder_vmas_.find(holder);
  return it == holder_vmas_.end() ? 0 : it->second;
}

absl::StatusOr<const void*> HostBackend::AddressForTesting(uint64_t handle) const {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(handle);
  if (it == leases_.end()) {
    return absl::NotFoundError(absl::StrCat("host backend: no pin with handle ", handle));
  }
  return static_cast<const void*>(static_cast<uint8_t*>(it->second.mapping->addr) +
                                  it->second.bytes.offset);
}

}  // namespace pinbroker
