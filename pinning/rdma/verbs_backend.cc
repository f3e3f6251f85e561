// One room, over 500 lines on purpose: the per-file registrations, the per-lease memory windows
// and the layout-change fencing of both share one mutex and one teardown order (windows before
// regions before the PD); the connection side already lives in connection_manager.cc.
#include "pinning/rdma/verbs_backend.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "pinning/page_range.h"
#include "pinning/rdma/registration_policy.h"
#include "common/scoped_fd.h"
#include "common/status_macros.h"

namespace pinbroker::rdma {
namespace {

// "lease 7 (owner 'job-3'): bytes [0, 12288) of file 8:1:1234", for messages.
std::string Describe(const PinSpec& spec) {
  return absl::StrCat("lease ", spec.lease, " (owner '", absl::CHexEscape(spec.owner),
                      "'): bytes [", spec.bytes.offset, ", ", spec.bytes.offset + spec.bytes.length,
                      ") of file ", spec.file != nullptr ? spec.file->id.ToString() : "?");
}

std::string Ms(absl::Duration d) {
  return absl::StrFormat("%.2f ms", absl::ToDoubleMilliseconds(d));
}

uint64_t RoundUp(uint64_t n, uint64_t page) { return (n + page - 1) / page * page; }

// The current size of `fd`, checking that it is still the file the spec describes.
absl::StatusOr<uint64_t> CheckedSize(const PinSpec& spec, int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("verbs backend: ", Describe(spec), ": fstat"));
  }
  if (static_cast<uint64_t>(st.st_dev) != spec.file->id.dev ||
      static_cast<uint64_t>(st.st_ino) != spec.file->id.ino) {
    return absl::InvalidArgumentError(absl::StrCat("verbs backend: ", Describe(spec), ": fd ", fd,
                                                   " is not the file PinSpec.file describes"));
  }
  return static_cast<uint64_t>(st.st_size);
}

absl::Status ValidateSpec(const PinSpec& spec) {
  if (!spec.rdma) {
    return absl::InvalidArgumentError(absl::StrCat(
        "verbs backend: lease ", spec.lease, " was not asked for RDMA; host pins go elsewhere"));
  }
  if (spec.fd < 0 || spec.file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("verbs backend: lease ", spec.lease, ": no file descriptor or file given"));
  }
  const uint64_t page = SystemPageSize();
  uint64_t end;
  if (spec.bytes.length == 0 || spec.bytes.offset % page != 0 || spec.bytes.length % page != 0 ||
      __builtin_add_overflow(spec.bytes.offset, spec.bytes.length, &end) ||
      end > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("verbs backend: ", Describe(spec),
                     ": the range must be non-empty, page-aligned and "
                     "within the largest file offset"));
  }
  ASSIGN_OR_RETURN(const uint64_t size, CheckedSize(spec, spec.fd));
  if (end > RoundUp(size, page)) {
    return absl::OutOfRangeError(absl::StrCat("verbs backend: ", Describe(spec),
                                              ": the range reaches past the end of the file (",
                                              size, " bytes)"));
  }
  return absl::OkStatus();
}

// A read-write descriptor of the file `spec.fd` is open on (read leases' pinned regions need
// a writable mapping: the kernel counts MW_BIND as write access).
absl::StatusOr<ScopedFd> ReopenWritable(const PinSpec& spec) {
  const std::string path = absl::StrCat("/proc/self/fd/", spec.fd);
  ScopedFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, "reopening the file for writing");
  RETURN_IF_ERROR(CheckedSize(spec, fd.get()).status());
  return fd;
}

absl::Status MemlockError(const PinSpec& spec, uint64_t length, const absl::Status& status) {
  return absl::ResourceExhaustedError(
      absl::StrCat("verbs backend: ", Describe(spec), ": pinning a ", length,
                   "-byte region failed (", status.message(),
                   "): the broker's RLIMIT_MEMLOCK is too small for it; raise "
                   "LimitMEMLOCK= in the unit or `ulimit -l`, or grant CAP_IPC_LOCK"));
}

// A kernel refusal's errno travels with the failed registration's status as a payload, read
// by Register() to decide whether the next candidate is worth trying, and stripped there.
constexpr absl::string_view kRefusalErrnoUrl = "pinbroker/rdma/refusal-errno";

absl::Status WithRefusalErrno(absl::Status status, int err) {
  if (err != 0) status.SetPayload(kRefusalErrnoUrl, absl::Cord(absl::StrCat(err)));
  return status;
}

// The errno WithRefusalErrno() attached (0 if none), removed from `status`.
int TakeRefusalErrno(absl::Status& status) {
  const auto payload = status.GetPayload(kRefusalErrnoUrl);
  if (!payload.has_value()) return 0;
  status.ErasePayload(kRefusalErrnoUrl);
  int err = 0;
  return absl::SimpleAtoi(std::string(*payload), &err) ? err : 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VerbsBackend>> VerbsBackend::Open(const VerbsOptions& options) {
  ASSIGN_OR_RETURN(OpenedDevices opened, OpenDevices(options.devices));
  if (opened.devices.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no usable RDMA device: ", opened.skipped.empty() ? "none matched the configuration"
                                                          : absl::StrJoin(opened.skipped, "; ")));
  }
  for (const std::string& s : opened.skipped) PB_LOG(WARNING) << "rdma: not using " << s;
  return std::unique_ptr<VerbsBackend>(new VerbsBackend(std::move(opened), options));
}

VerbsBackend::~VerbsBackend() {
  Shutdown();
  RegionCache::Released released;
  {
    absl::MutexLock lock(&mu_);
    // Every window went with its connection; the regions can be deregistered now.
    released = regions_.TakeAll();
    grants_.clear();
  }
  released.clear();
}

absl::Status VerbsBackend::Start(ConnectionManager::Authenticator authenticate,
                                 AccessLostCallback on_access_lost) {
  on_access_lost_ = std::move(on_access_lost);
  std::vector<VerbsDevice*> devices;
  for (auto& d : devices_.devices) devices.push_back(d.get());
  ASSIGN_OR_RETURN(
      connections_,
      ConnectionManager::Listen(
          std::move(devices), {options_.address, options_.port}, std::move(authenticate),
          [this](const std::string& owner, std::vector<LeaseId> lost, const std::string& reason) {
            OnConnectionClosed(owner, std::move(lost), reason);
          }));
  for (VerbsDevice* d : connections_->devices()) {
    const DeviceCaps& c = d->caps();
    PB_LOG(INFO) << "rdma: using " << c.name << " port " << static_cast<int>(c.port)
                 << ": active MTU " << c.active_mtu << ", ODP "
                 << (c.odp.supported ? absl::StrCat("yes (rc read ", c.odp.read, " write ",
                                                    c.odp.write, " atomic ", c.odp.atomic, ")")
                                     : "no")
                 << ", memory windows [" << absl::StrJoin(MemoryWindowTypeNames(c), ",") << "] max "
                 << c.max_mw;
  }
  return absl::OkStatus();
}

void VerbsBackend::Shutdown() {
  if (connections_ != nullptr) connections_->Shutdown();
}

void VerbsBackend::Disconnect(absl::string_view owner, std::string reason) {
  if (connections_ != nullptr) connections_->Disconnect(owner, std::move(reason));
}

std::string VerbsBackend::DescribeEndpoints() const {
  return connections_ != nullptr ? connections_->DescribeEndpoints() : "(not listening)";
}

VerbsStatus VerbsBackend::Status() const {
  VerbsStatus out;
  if (connections_ == nullptr) {
    for (const auto& d : devices_.devices) out.devices.push_back(d->caps());
    return out;
  }
  for (VerbsDevice* d : connections_->devices()) out.devices.push_back(d->caps());
  out.endpoints = connections_->endpoints();
  out.connections = connections_->connection_count();
  return out;
}

void VerbsBackend::OnConnectionClosed(const std::string& owner, std::vector<LeaseId> lost,
                                      const std::string& reason) {
  if (lost.empty()) return;
  PB_LOG(INFO) << "rdma: session " << owner << " lost RDMA access to " << lost.size() << " leases ("
               << reason << ")";
  // The grants stay until the engine revokes the leases: Revoke() then finds nothing bound.
  if (on_access_lost_)
    on_access_lost_(std::move(lost), absl::StrCat("RDMA connection lost: ", reason));
}

absl::StatusOr<BackendPin> VerbsBackend::Pin(const PinSpec& spec) {
  RETURN_IF_ERROR(ValidateSpec(spec));
  std::shared_ptr<Connection> conn =
      connections_ != nullptr ? connections_->Find(spec.owner) : nullptr;
  if (conn == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("session ", spec.owner,
                                                      " has no RDMA connection; attach one to ",
                                                      DescribeEndpoints(), " first"));
  }
  if (absl::Status ready = conn->AwaitEstablished(options_.verbs_timeout); !ready.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(ready.message(), " (endpoints ", DescribeEndpoints(), ")"));
  }
  VerbsDevice* device = conn->device();
  const DeviceCaps& caps = device->caps();
  ASSIGN_OR_RETURN(Registered reg, Register(spec, device, conn->path_mtu()));
  const Candidate candidate = reg.candidate;
  const RegistrationMode mode = candidate.mode;

  uint64_t handle;
  {
    absl::MutexLock lock(&mu_);
    handle = next_handle_++;
  }
  uint32_t rkey = 0;
  const uint64_t address = reinterpret_cast<uint64_t>(reg.mapped->address()) +
                           (spec.bytes.offset - reg.mapped->offset());
  const absl::Time start = absl::Now();
  if (candidate.window) {
    auto bound = conn->BindWindow(handle, spec.lease, reg.mapped->mr(), address, spec.bytes.length,
                                  WindowAccessFlags(spec.access, mode, caps),
                                  options_.verbs_timeout, std::move(reg.own));
    if (!bound.ok()) {
      if (candidate.cached()) ReleaseRegionWindow(reg.region);
      return absl::Status(bound.status().code(), absl::StrCat("verbs backend: ", Describe(spec),
                                                              ": ", bound.status().message()));
    }
    rkey = *bound;
  } else {
    rkey = reg.mapped->mr()->rkey;
    RETURN_IF_ERROR(conn->AdoptLeaseRegion(handle, spec.lease, std::move(reg.own)));
  }
  const absl::Duration bind_time = absl::Now() - start;
  {
    absl::MutexLock lock(&mu_);
    grants_[handle] = Grant{spec.lease, conn,          candidate.window, candidate.cached(),
                            reg.region, spec.file->id, spec.bytes,       mode};
    pinned_bytes_ += spec.bytes.length;
  }
  if (!conn->established()) {
    // The connection went while the key was being set up: its teardown may have reported this
    // lease before the engine knew it. Fail the pin rather than grant a dead key.
    Unpin(handle, "undo").IgnoreError();
    return absl::UnavailableError(absl::StrCat("verbs backend: ", Describe(spec),
                                               ": the session's RDMA connection went away while "
                                               "the lease was being set up; attach again"));
  }
  const TransferConstraints constraints = ConstraintsFor(caps, mode, SystemPageSize());
  PB_LOG(INFO) << "rdma: lease " << spec.lease << ": " << DescribeCandidate(candidate) << " on "
               << caps.name << ", rkey " << absl::StrFormat("0x%x", rkey) << " at "
               << absl::StrFormat("0x%x", address) << " +" << spec.bytes.length
               << (candidate.window ? absl::StrCat(", window bound in ", Ms(bind_time)) : "");
  BackendPin pin;
  pin.handle = handle;
  pin.mode = mode;
  pin.rdma.device = caps.name;
  pin.rdma.rkey = rkey;
  pin.rdma.remote_address = address;
  pin.rdma.length = spec.bytes.length;
  pin.rdma.required_alignment = constraints.required_alignment;
  pin.rdma.max_transfer_size = constraints.max_transfer_size;
  pin.rdma.constraint_reason = constraints.reason;
  return pin;
}

absl::StatusOr<VerbsBackend::Registered> VerbsBackend::Register(const PinSpec& spec,
                                                                VerbsDevice* device,
                                                                uint32_t path_mtu) {
  const DeviceCaps& caps = device->caps();
  const FileKind kind = ClassifyFile(*spec.file);
  DeviceCaps planned = caps;
  if (options_.file_regions_despite_unbounded_windows) planned.window_bounds_enforced = true;
  const Plan plan = PlanRegistration(kind, spec.access, planned, path_mtu);
  const uint64_t end = spec.bytes.offset + spec.bytes.length;
  {
    // A cached region that serves any candidate beats registering a better one.
    absl::MutexLock lock(&mu_);
    for (const Candidate& c : plan.candidates) {
      if (!c.cached()) continue;
      const RegionKey key{caps.name, spec.file->id, c.mode, c.writable};
      if (auto id = regions_.AcquireExisting(key, end)) {
        Registered reg;
        reg.candidate = c;
        reg.region = *id;
        reg.mapped = static_cast<MappedRegion*>(regions_.Get(*id)->resources.get());
        return reg;
      }
    }
  }
  std::vector<std::string> tried;
  ScopedFd writable;
  for (const Candidate& c : plan.candidates) {
    int fd = spec.fd;
    if (c.writable && spec.access == Access::kRead) {
      if (!writable.valid()) {
        auto reopened = ReopenWritable(spec);
        if (!reopened.ok()) {
          tried.push_back(absl::StrCat(DescribeCandidate(c), ": needs the file open for writing (",
                                       reopened.status().message(), ")"));
          continue;
        }
        writable = *std::move(reopened);
      }
      fd = writable.get();
    }
    auto registered = RegisterNew(spec, device, c, fd);
    if (registered.ok()) return registered;
    absl::Status failed = registered.status();
    const int err = TakeRefusalErrno(failed);
    if (err != 0 && RefusalTriesNext(c.mode, err)) {
      tried.push_back(ExplainRefusal(c, kind, err));
      continue;
    }
    return failed;
  }
  for (const std::string& r : plan.ruled_out) tried.push_back(absl::StrCat("ruled out ", r));
  return NoModeError(Describe(spec), caps, kind, spec.access, tried);
}

absl::StatusOr<VerbsBackend::Registered> VerbsBackend::RegisterNew(const PinSpec& spec,
                                                                   VerbsDevice* device,
                                                                   const Candidate& c, int fd) {
  const DeviceCaps& caps = device->caps();
  const uint64_t page = SystemPageSize();
  MappedRegion::Spec region;
  region.pd = device->pd();
  region.fd = fd;
  region.writable = c.writable;
  region.dax = spec.file->dax;
  region.populate = c.mode == RegistrationMode::kPinned;
  region.access = RegionAccessFlags(c, spec.access, caps);
  if (!c.cached()) {
    region.offset = spec.bytes.offset;
    region.length = spec.bytes.length;
    MappedRegion::Result r;
    if (c.mode == RegistrationMode::kPinned && !spec.file->dax) {
      // Inside the file's shared mapping: a range an earlier lease faulted in registers fast.
      ASSIGN_OR_RETURN(std::shared_ptr<const FileMapping> mapping,
                       LeaseMapping(spec, fd, c.writable, spec.bytes.offset + spec.bytes.length));
      r = MappedRegion::CreateWithin(std::move(mapping), region);
    } else {
      r = MappedRegion::Create(region);
    }
    if (r.region == nullptr) {
      if (r.err == ENOMEM && c.mode == RegistrationMode::kPinned) {
        return WithRefusalErrno(MemlockError(spec, region.length, r.status), r.err);
      }
      return WithRefusalErrno(
          absl::Status(r.status.code(),
                       absl::StrCat("verbs backend: ", Describe(spec), ": ", DescribeCandidate(c),
                                    ": ", r.status.message())),
          r.err);
    }
    PB_LOG(INFO) << "rdma: lease " << spec.lease << ": registered a " << DescribeCandidate(c)
                 << " of " << region.length << " bytes on " << caps.name << " in "
                 << Ms(r.registration_time);
    Registered reg;
    reg.candidate = c;
    reg.mapped = r.region.get();
    reg.own = std::move(r.region);
    return reg;
  }
  // A file region maps the file from offset 0 to its end (or the lease's, if further).
  ASSIGN_OR_RETURN(const uint64_t size, CheckedSize(spec, fd));
  region.offset = 0;
  region.length = RoundUp(std::max(size, spec.bytes.offset + spec.bytes.length), page);
  const RegionKey key{caps.name, spec.file->id, c.mode, c.writable};
  RegionCache::Ticket ticket;
  {
    absl::MutexLock lock(&mu_);
    ticket = regions_.BeginRegistration(spec.file->id);
  }
  MappedRegion::Result r = MappedRegion::Create(region);
  if (r.region == nullptr) {
    {
      absl::MutexLock lock(&mu_);
      regions_.Abandon(ticket);
    }
    if (r.err == ENOMEM && c.mode == RegistrationMode::kPinned) {
      return WithRefusalErrno(MemlockError(spec, region.length, r.status), r.err);
    }
    return WithRefusalErrno(
        absl::Status(r.status.code(), absl::StrCat("verbs backend: ", Describe(spec), ": ",
                                                   DescribeCandidate(c), ": ", r.status.message())),
        r.err);
  }
  PB_LOG(INFO) << "rdma: file " << spec.file->id.ToString() << ": registered a "
               << DescribeCandidate(c) << " of " << region.length << " bytes on " << caps.name
               << " in " << Ms(r.registration_time);
  RegionCache::Released released;
  Registered reg;
  reg.candidate = c;
  {
    absl::MutexLock lock(&mu_);
    reg.region = regions_.Insert(ticket, key, region.length, std::move(r.region), &released);
    const RegionCache::Region* inserted = regions_.Get(reg.region);
    reg.mapped = static_cast<MappedRegion*>(inserted->resources.get());
    if (inserted->stale) {
      PB_LOG(INFO) << "rdma: file " << spec.file->id.ToString()
                   << ": the new region overlapped a layout change; it serves only lease "
                   << spec.lease << " and goes with its window";
    }
  }
  released.clear();  // Superseded idle regions, or ours if another pin's was used.
  return reg;
}

absl::StatusOr<std::shared_ptr<const FileMapping>> VerbsBackend::LeaseMapping(const PinSpec& spec,
                                                                              int fd, bool writable,
                                                                              uint64_t end) {
  const std::pair<FileId, bool> key{spec.file->id, writable};
  {
    absl::MutexLock lock(&mu_);
    auto it = mappings_.find(key);
    if (it != mappings_.end()) {
      std::shared_ptr<const FileMapping> live = it->second.lock();
      if (live != nullptr && live->length() >= end) return live;
      if (live == nullptr) mappings_.erase(it);
    }
  }
  // A new one, over the whole file (or to the lease's end): it reserves address space only.
  ASSIGN_OR_RETURN(const uint64_t size, CheckedSize(spec, fd));
  const uint64_t length = RoundUp(std::max(size, end), SystemPageSize());
  FileMapping::Result r = FileMapping::Create(fd, length, writable);
  if (r.mapping == nullptr) {
    return WithRefusalErrno(
        absl::Status(r.status.code(),
                     absl::StrCat("verbs backend: ", Describe(spec), ": ", r.status.message())),
        r.err);
  }
  absl::MutexLock lock(&mu_);
  // Drop entries whose mappings are gone, then keep the new one (a larger one another pin may
  // have made meanwhile would do too; this one is as good).
  for (auto it = mappings_.begin(); it != mappings_.end();) {
    if (it->second.expired()) {
      mappings_.erase(it++);
    } else {
      ++it;
    }
  }
  mappings_[key] = r.mapping;
  return std::shared_ptr<const FileMapping>(std::move(r.mapping));
}

absl::Status VerbsBackend::Release(uint64_t handle) { return Unpin(handle, "release"); }

absl::Status VerbsBackend::Revoke(uint64_t handle) { return Unpin(handle, "revoke"); }

absl::Status VerbsBackend::Unpin(uint64_t handle, absl::string_view verb) {
  Grant grant;
  {
    absl::MutexLock lock(&mu_);
    auto it = grants_.find(handle);
    if (it == grants_.end()) {
      return absl::NotFoundError(
          absl::StrCat("verbs backend: cannot ", verb, " pin handle ", handle, ": no such pin"));
    }
    grant = std::move(it->second);
    grants_.erase(it);
    pinned_bytes_ -= grant.bytes.length;
  }
  const absl::Time start = absl::Now();
  const absl::Status undone = grant.window
                                  ? grant.conn->UnbindWindow(handle, options_.verbs_timeout)
                                  : grant.conn->DropLeaseRegion(handle);
  if (!undone.ok()) {
    // The key may still work: keep the grant (and its region) rather than pretend.
    const std::string message = absl::StrCat("verbs backend: cannot ", verb, " lease ", grant.lease,
                                             ": ", undone.message());
    absl::MutexLock lock(&mu_);
    pinned_bytes_ += grant.bytes.length;
    grants_[handle] = std::move(grant);
    return absl::InternalError(message);
  }
  const absl::Duration took = absl::Now() - start;
  if (grant.cached) ReleaseRegionWindow(grant.region);
  PB_LOG(INFO) << "rdma: lease " << grant.lease << ": access taken away (" << verb << ") in "
               << Ms(took);
  return absl::OkStatus();
}

void VerbsBackend::ReleaseRegionWindow(RegionCache::Id id) {
  RegionCache::Released released;
  {
    absl::MutexLock lock(&mu_);
    regions_.ReleaseWindow(id, &released);
  }
  const absl::Time start = absl::Now();
  const size_t count = released.size();
  released.clear();  // Deregisters and unmaps.
  if (count > 0) {
    PB_LOG(INFO) << "rdma: region " << id << " deregistered with its last window in "
                 << Ms(absl::Now() - start);
  }
}

uint64_t VerbsBackend::pinned_bytes() const {
  absl::MutexLock lock(&mu_);
  return pinned_bytes_;
}

void VerbsBackend::OnLayoutChange(const FileId& file, ByteRange changed, LayoutPhase phase) {
  absl::MutexLock lock(&mu_);
  if (phase == LayoutPhase::kBefore) {
    regions_.BeginLayoutChange(file, changed);
    return;
  }
  regions_.EndLayoutChange(file);
  for (const RegistrationInfo& r : regions_.List(file)) {
    if (r.stale) {
      PB_LOG(INFO) << "rdma: file " << file.ToString() << ": a stale "
                   << RegistrationModeName(r.mode) << " region of " << r.range.length
                   << " bytes stays for its " << r.windows
                   << " windows of leases outside the change; it goes with the last";
    }
  }
}

std::vector<RegistrationInfo> VerbsBackend::Registrations(const FileId& file) const {
  absl::MutexLock lock(&mu_);
  std::vector<RegistrationInfo> out = regions_.List(file);
  // Lease regions: one per lease, exactly its bytes; in file order.
  const size_t cached = out.size();
  for (const auto& [handle, grant] : grants_) {
    if (grant.cached || grant.file != file) continue;
    RegistrationInfo info;
    info.device = grant.conn->device()->name();
    info.mode = grant.mode;
    info.range = grant.bytes;
    info.windows = grant.window ? 1 : 0;
    out.push_back(std::move(info));
  }
  std::sort(out.begin() + static_cast<ptrdiff_t>(cached), out.end(),
            [](const RegistrationInfo& a, const RegistrationInfo& b) {
              return a.range.offset < b.range.offset;
            });
  return out;
}

}  // namespace pinbroker::rdma
