#include "pinning/pin_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace pinbroker {
namespace {

// Whether `caller` (unset: the broker itself) may write the file open as `fd`, as the kernel
// decides it (mode bits, ACLs, a read-only mount, an immutable file). faccessat2 with
// AT_EACCESS judges by the thread's fsuid/fsgid/groups and, unlike an open for writing, breaks
// no file lease. Any failure, including a kernel without faccessat2, answers no.
bool MayWrite(int fd, const std::optional<UnixCredentials>& caller) {
  std::optional<ScopedFsCredentials> as_caller;
  if (caller.has_value()) {
    as_caller.emplace(*caller);
    if (!as_caller->status().ok()) return false;
  }
  return syscall(SYS_faccessat2, fd, "", W_OK, AT_EMPTY_PATH | AT_EACCESS) == 0;
}

absl::Status CheckRangeWithinFile(uint64_t offset, uint64_t length, uint64_t size) {
  if (offset >= size) {
    return absl::OutOfRangeError(
        absl::StrCat("offset ", offset, " is at or past end of file (size ", size, ")"));
  }
  if (length > size - offset) {
    return absl::OutOfRangeError(
        absl::StrCat("range [", offset, ", ", offset + length, ") runs past end of file (size ",
                     size, "); at most ", size - offset, " bytes can be pinned from that offset"));
  }
  return absl::OkStatus();
}

// A refusal of an open made with `caller`'s credentials names them and the rule that refused.
// A permission refusal of `caller`'s, naming the caller and the rule.
absl::Status NameCaller(const absl::Status& status, const UnixCredentials& caller) {
  if (!absl::IsPermissionDenied(status)) return status;
  return absl::PermissionDeniedError(
      absl::StrCat(caller.Describe(), ": ", status.message(),
                   " (rule: a caller may do through the broker only what the file's own "
                   "permissions let it do, as the kernel decides for its uid and groups)"));
}
template <typename T>
absl::StatusOr<T> NameCaller(absl::StatusOr<T> result, const UnixCredentials& caller) {
  if (result.ok()) return result;
  return NameCaller(result.status(), caller);
}

// `f()` run with `caller`'s filesystem credentials on this thread (the broker's own when
// unset), its permission refusals naming the caller.
template <typename F>
auto AsCaller(const std::optional<UnixCredentials>& caller, F f) -> decltype(f()) {
  if (!caller.has_value()) return f();
  // The caller's credentials are this thread's only until the scope ends, before anything
  // else runs on it.
  ScopedFsCredentials as_caller(*caller);
  RETURN_IF_ERROR(as_caller.status());
  return NameCaller(f(), *caller);
}

}  // namespace

PinService::PinService(Clock* clock, PinBackend* backend, Options options)
    : clock_(clock),
      backend_(backend),
      page_size_(SystemPageSize()),
      files_(clock),
      budget_(options.pinned_bytes_budget),
      table_(
          clock, [this](const LeaseInfo& lease) { lifecycle_.OnExpired(lease); }, options.table),
      lifecycle_(&table_, backend, &files_,
                 [this](const LeaseInfo& lease) { NotifyLeaseEnded(lease); }),
      coordinator_(clock, &table_, &lifecycle_, page_size_, std::move(options.on_layout_apply)) {}

absl::StatusOr<std::unique_ptr<PinService>> PinService::Create(Clock* clock, PinBackend* backend,
                                                               std::vector<ExportOptions> exports,
                                                               Options options) {
  std::unique_ptr<PinService> service(new PinService(clock, backend, options));
  for (ExportOptions& opts : exports) {
    const std::string name = opts.name;
    if (service->exports_.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("export '", name, "' is defined twice"));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Export> exp, Export::Open(std::move(opts)));
    service->exports_.emplace(name, std::move(exp));
  }
  return service;
}

PinService::~PinService() {
  EndAllRevokeWaits();
  coordinator_.Shutdown();
  lifecycle_.RevokeMany(LiveLeaseIds(), "broker shutting down");
}

const Export* PinService::FindExport(absl::string_view name) const {
  auto it = exports_.find(name);
  return it == exports_.end() ? nullptr : it->second.get();
}

std::vector<const Export*> PinService::exports() const {
  std::vector<const Export*> out;
  for (const auto& [name, exp] : exports_) out.push_back(exp.get());
  return out;
}

absl::StatusOr<const Export*> PinService::ExportFor(absl::string_view name) const {
  if (const Export* exp = FindExport(name)) return exp;
  std::vector<std::string> names;
  for (const auto& [n, exp] : exports_) names.push_back(n);
  return absl::NotFoundError(absl::StrCat("no export named '", name, "'; this broker exports: ",
                                          names.empty() ? "(none)" : absl::StrJoin(names, ", ")));
}

absl::Duration PinService::EffectiveTtl(const Export& exp, absl::Duration requested) const {
  if (requested == absl::ZeroDuration()) return exp.options().default_ttl;
  return std::min(requested, exp.options().max_ttl);
}

absl::StatusOr<LeaseInfo> PinService::Pin(const PinRequest& request) {
  if (request.owner.empty()) return absl::InvalidArgumentError("a pin needs an owner");
  if (request.length == 0) return absl::InvalidArgumentError("pin length must be positive");
  if (request.ttl < absl::ZeroDuration() || request.wait_if_blocked < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ttl and wait_if_blocked must not be negative");
  }
  const std::optional<PageRange> pages = PagesCovering(request.offset, request.length, page_size_);
  if (!pages.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("range offset ", request.offset, " length ",
                                                   request.length, " overflows 64 bits"));
  }
  ASSIGN_OR_RETURN(const Export* exp, ExportFor(request.export_name));
  // A file with leases is opened once per access, by its first pin; the pins after it share
  // that descriptor once the kernel says their caller may open the file (FileState).
  ASSIGN_OR_RETURN(const ResolvedFile resolved, AsCaller(request.caller, [&] {
                     return exp->Resolve(request.path, request.access);
                   }));
  FileRegistry::FileRef state = files_.Acquire(resolved.id);
  ASSIGN_OR_RETURN(const std::shared_ptr<const OpenedFile> opened,
                   SharedDescriptor(*exp, *state, resolved, request.caller));
  const int fd = opened->fd.get();
  FileInfo info = opened->info;
  const LeaseId id = table_.NewId();
  bool reserved = false;
  bool committed = false;
  absl::Cleanup undo = [&] {
    if (committed) return;
    if (reserved) state->busy.Remove(id).IgnoreError();
    table_.DiscardId(id);
  };
  const absl::Time wait_until = request.wait_if_blocked > absl::ZeroDuration()
                                    ? clock_->Now() + request.wait_if_blocked
                                    : absl::InfinitePast();
  RETURN_IF_ERROR(state->busy.Reserve(id, *pages, wait_until));
  reserved = true;

  // A layout change may have finished while this pin waited or raced it: check the size the
  // file has now that the range is reserved (a later change will see the reservation).
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoToStatus(errno, "fstat");
  RETURN_IF_ERROR(
      CheckRangeWithinFile(request.offset, request.length, static_cast<uint64_t>(st.st_size)));
  info.size = static_cast<uint64_t>(st.st_size);

  const ByteRange bytes = ToBytes(*pages, page_size_);
  // Counted before the backend pins, given back by the lease record when it is retired (or
  // here, by `quota` going out of scope, when the pin fails).
  QuotaHold quota;
  if (request.account != nullptr) {
    ASSIGN_OR_RETURN(quota, request.account->ReserveLease(exp->name(), bytes.length));
  }
  uint64_t budgeted = 0;
  if (!budget_.TryAdd(bytes.length, &budgeted)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the broker holds ", budgeted, " pinned bytes and this pin",
        request.holder.empty() ? "" : absl::StrCat(" by ", request.holder), " needs ", bytes.length,
        " more; its budget max_pinned_bytes_total is ", budget_.limit()));
  }
  quota.Add(&budget_, bytes.length);
  PinSpec spec;
  spec.lease = id;
  spec.owner = request.owner;
  spec.holder = request.holder;
  spec.fd = fd;
  spec.file = &info;
  spec.bytes = bytes;
  spec.access = request.access;
  spec.rdma = request.rdma;
  ASSIGN_OR_RETURN(const BackendPin pin, backend_->Pin(spec));

  const absl::Time now = clock_->Now();
  LeaseInfo lease;
  lease.id = id;
  lease.owner = request.owner;
  lease.export_name = exp->name();
  lease.path = request.path;
  lease.file = info.id;
  lease.pages = *pages;
  lease.offset = bytes.offset;
  lease.length = bytes.length;
  lease.access = request.access;
  lease.mode = pin.mode;
  lease.state = LeaseState::kGranted;
  lease.granted_at = now;
  lease.expires_at = now + EffectiveTtl(*exp, request.ttl);
  lease.backend_handle = pin.handle;
  lease.rdma = pin.rdma;
  lease.guards_layout = request.may_guard_layout.value_or(request.access == Access::kReadWrite ||
                                                          MayWrite(fd, request.caller));

  absl::Status inserted;
  const absl::Status commit = state->busy.Commit(
      id, [&] { inserted = table_.Insert(lease, request.admit, std::move(quota)); });
  if (!commit.ok() || !inserted.ok()) {
    backend_->Release(pin.handle).IgnoreError();
    return commit.ok() ? inserted : commit;
  }
  committed = true;
  PB_LOG(INFO) << table_.Name(id) << " granted: owner=" << lease.owner
               << " export=" << lease.export_name << " path=" << lease.path << " bytes=["
               << lease.offset << ", " << lease.offset + lease.length
               << ") access=" << AccessName(lease.access)
               << " mode=" << RegistrationModeName(lease.mode);
  {
    absl::ReaderMutexLock lock(&guard_mu_);
    if (guard_ != nullptr) guard_->OnLeaseGranted(lease, fd);
  }
  return lease;
}

absl::StatusOr<LeaseInfo> PinService::Renew(absl::string_view owner, LeaseId id,
                                            absl::Duration ttl) {
  if (ttl < absl::ZeroDuration()) return absl::InvalidArgumentError("ttl must not be negative");
  // The export's limits apply; a lease whose export is unknown cannot exist.
  const absl::StatusOr<LeaseInfo> current = table_.Get(id);
  if (!current.ok() || current->owner != owner) {
    // Fails with the table's owner-aware NOT_FOUND; foreign leases are not disclosed.
    return table_.Renew(owner, id, ttl);
  }
  const Export* exp = FindExport(current->export_name);
  return table_.Renew(owner, id, EffectiveTtl(*exp, ttl));
}

absl::Status PinService::Release(absl::string_view owner, LeaseId id) {
  return lifecycle_.Release(owner, id);
}

size_t PinService::RevokeLeases(const std::vector<LeaseId>& ids, const std::string& reason) {
  size_t revoked = 0;
  for (const absl::Status& status : lifecycle_.RevokeMany(ids, reason)) revoked += status.ok();
  return revoked;
}

LayoutOptions PinService::LayoutOptionsFor(const Export& exp, const LayoutRequest& request) const {
  LayoutOptions options;
  options.policy = request.policy.value_or(exp.options().default_policy);
  options.grace = request.grace.value_or(exp.options().grace);
  options.deadline = clock_->Now() + request.timeout.value_or(exp.options().layout_timeout);
  options.initiator = request.initiator;
  options.discloses = request.discloses;
  return options;
}

absl::StatusOr<LayoutResult> PinService::Truncate(const LayoutRequest& request, uint64_t new_size) {
  ASSIGN_OR_RETURN(const Export* exp, ExportFor(request.export_name));
  ASSIGN_OR_RETURN(OpenedFile file,
                   OpenFile(*exp, request.path, Access::kReadWrite, request.caller));
  FileRegistry::FileRef state = files_.Acquire(file.info.id);
  auto result =
      coordinator_.Truncate(*state, file.fd.get(), new_size, LayoutOptionsFor(*exp, request));
  if (!result.ok()) {
    PB_LOG(WARNING) << "layout truncate of " << exp->name() << "/" << request.path << " to "
                    << new_size << " not applied: " << result.status();
  }
  return result;
}

absl::StatusOr<LayoutResult> PinService::PunchHole(const LayoutRequest& request, uint64_t offset,
                                                   uint64_t length) {
  ASSIGN_OR_RETURN(const Export* exp, ExportFor(request.export_name));
  ASSIGN_OR_RETURN(OpenedFile file,
                   OpenFile(*exp, request.path, Access::kReadWrite, request.caller));
  FileRegistry::FileRef state = files_.Acquire(file.info.id);
  auto result = coordinator_.PunchHole(*state, file.fd.get(), offset, length,
                                       LayoutOptionsFor(*exp, request));
  if (!result.ok()) {
    PB_LOG(WARNING) << "layout punch hole of " << exp->name() << "/" << request.path << " ["
                    << offset << ", +" << length << ") not applied: " << result.status();
  }
  return result;
}

void PinService::StartLayoutAsync(
    const LayoutRequest& request, std::string what, LayoutDone done,
    absl::FunctionRef<void(FileState&, int fd, LayoutOptions, LayoutDone)> start) {
  absl::StatusOr<const Export*> exp = ExportFor(request.export_name);
  absl::StatusOr<OpenedFile> file =
      exp.ok() ? OpenFile(**exp, request.path, Access::kReadWrite, request.caller)
               : absl::StatusOr<OpenedFile>(exp.status());
  if (!file.ok()) {
    coordinator_.executor()->Post(
        [done = std::move(done), status = file.status()]() mutable { done(std::move(status)); });
    return;
  }
  // The descriptor and the file's state live until the change completes.
  auto opened = std::make_shared<OpenedFile>(*std::move(file));
  auto state = std::make_shared<FileRegistry::FileRef>(files_.Acquire(opened->info.id));
  start(**state, opened->fd.get(), LayoutOptionsFor(**exp, request),
        [opened, state, done = std::move(done), what = std::move(what),
         where = absl::StrCat((*exp)->name(), "/", request.path)](
            absl::StatusOr<LayoutResult> result) mutable {
          if (!result.ok()) {
            PB_LOG(WARNING) << "layout " << what << " of " << where
                            << " not applied: " << result.status();
          }
          done(std::move(result));
        });
}

void PinService::TruncateAsync(const LayoutRequest& request, uint64_t new_size, LayoutDone done) {
  StartLayoutAsync(request, absl::StrCat("truncate to ", new_size), std::move(done),
                   [&](FileState& file, int fd, LayoutOptions options, LayoutDone finish) {
                     coordinator_.TruncateAsync(file, fd, new_size, std::move(options),
                                                std::move(finish));
                   });
}

void PinService::PunchHoleAsync(const LayoutRequest& request, uint64_t offset, uint64_t length,
                                LayoutDone done) {
  StartLayoutAsync(request, absl::StrCat("punch hole [", offset, ", +", length, ")"),
                   std::move(done),
                   [&](FileState& file, int fd, LayoutOptions options, LayoutDone finish) {
                     coordinator_.PunchHoleAsync(file, fd, offset, length, std::move(options),
                                                 std::move(finish));
                   });
}

PinService::RevokeWaitId PinService::RevokeAfterGraceAsync(
    LeaseId id, std::string reason, absl::Time deadline,
    absl::AnyInvocable<void(bool revoked)> done) {
  RevokeWaitId wait = 0;
  {
    absl::MutexLock lock(&revoke_mu_);
    if (!revoke_stopping_) {
      wait = next_revoke_wait_++;
      revoke_waits_.emplace(wait, RevokeWait{id, reason, 0, std::move(done)});
      revoke_waits_by_lease_[id].push_back(wait);
    }
  }
  if (wait == 0) {  // Shutting down: no grace.
    coordinator_.executor()->Post(
        [this, id, reason = std::move(reason), done = std::move(done)]() mutable {
          done(lifecycle_.Revoke(id, reason).ok());
        });
    return 0;
  }
  RecallLeases({id}, reason, deadline);
  // Registered before the check, so an end in between is seen by one of the two.
  if (!IsLive(id)) {
    FinishRevokeWait(wait, /*revoke=*/false, /*from_timer=*/false);
    return wait;
  }
  const Clock::TimerId timer = clock_->Schedule(deadline, [this, wait] {
    // On the clock's thread: the revoke itself runs on the executor.
    FinishRevokeWait(wait, /*revoke=*/true, /*from_timer=*/true);
  });
  bool pending = false;
  {
    absl::MutexLock lock(&revoke_mu_);
    if (auto it = revoke_waits_.find(wait); it != revoke_waits_.end()) {
      it->second.timer = timer;
      ++revoke_waits_parked_;
      pending = true;
    }
  }
  if (!pending) clock_->Cancel(timer);
  return wait;
}

void PinService::EndRevokeWait(RevokeWaitId wait) {
  FinishRevokeWait(wait, /*revoke=*/true, /*from_timer=*/false);
}

void PinService::FinishRevokeWait(RevokeWaitId wait, bool revoke, bool from_timer) {
  RevokeWait ended;
  {
    absl::MutexLock lock(&revoke_mu_);
    auto it = revoke_waits_.find(wait);
    if (it == revoke_waits_.end()) return;
    ended = std::move(it->second);
    revoke_waits_.erase(it);
    if (ended.timer != 0) --revoke_waits_parked_;
    auto by_lease = revoke_waits_by_lease_.find(ended.lease);
    if (by_lease != revoke_waits_by_lease_.end()) {
      std::erase(by_lease->second, wait);
      if (by_lease->second.empty()) revoke_waits_by_lease_.erase(by_lease);
    }
    ++revoke_waits_running_;
  }
  // (A callback must not cancel itself; it has started anyway.)
  if (ended.timer != 0 && !from_timer) clock_->Cancel(ended.timer);
  coordinator_.executor()->Post([this, revoke, ended = std::move(ended)]() mutable {
    const bool revoked = revoke && lifecycle_.Revoke(ended.lease, ended.reason).ok();
    ended.done(revoked);
    ended.done = nullptr;
    absl::MutexLock lock(&revoke_mu_);
    --revoke_waits_running_;
  });
}

void PinService::EndAllRevokeWaits() {
  std::vector<RevokeWaitId> waits;
  {
    absl::MutexLock lock(&revoke_mu_);
    revoke_stopping_ = true;
    for (const auto& [wait, unused] : revoke_waits_) waits.push_back(wait);
  }
  for (RevokeWaitId wait : waits) FinishRevokeWait(wait, /*revoke=*/true, /*from_timer=*/false);
  absl::MutexLock lock(&revoke_mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(revoke_mu_) {
    return revoke_waits_.empty() && revoke_waits_running_ == 0;
  };
  revoke_mu_.Await(absl::Condition(&idle));
}

size_t PinService::parked() const {
  const size_t changes = coordinator_.parked();
  absl::MutexLock lock(&revoke_mu_);
  return changes + revoke_waits_parked_;
}

size_t PinService::pending_async() const {
  const size_t changes = coordinator_.pending_async();
  absl::MutexLock lock(&revoke_mu_);
  return changes + revoke_waits_.size() + revoke_waits_running_;
}

std::vector<LeaseInfo> PinService::ListLeases(const LeaseFilter& filter) const {
  return table_.List(filter);
}

absl::StatusOr<FileDescription> PinService::DescribeFile(
    absl::string_view export_name, absl::string_view path,
    const std::optional<UnixCredentials>& caller) {
  ASSIGN_OR_RETURN(const Export* exp, ExportFor(export_name));
  ASSIGN_OR_RETURN(OpenedFile file,
                   AsCaller(caller, [&] { return exp->OpenFile(path, Access::kRead); }));
  FileDescription out;
  out.export_name = exp->name();
  out.path = std::string(path);
  out.info = file.info;
  LeaseFilter filter;
  filter.file = file.info.id;
  out.leases = table_.List(filter);
  if (auto state = files_.Find(file.info.id)) {
    out.busy = (*state)->busy.Entries();
    out.blocked = (*state)->busy.Blocks();
  }
  {
    absl::ReaderMutexLock lock(&guard_mu_);
    const GuardReport report = guard_ != nullptr ? guard_->Report(file.info.id) : UnguardedReport();
    out.guard = report.guard;
    out.unguarded_operations = report.unguarded_operations;
  }
  out.registrations = backend_->Registrations(file.info.id);
  return out;
}

void PinService::AttachGuard(FileGuardHooks* guard) {
  absl::MutexLock lock(&guard_mu_);
  guard_ = guard;
}

void PinService::NotifyLeaseEnded(const LeaseInfo& lease) {
  {
    absl::ReaderMutexLock lock(&guard_mu_);
    if (guard_ != nullptr) guard_->OnLeaseEnded(lease);
  }
  std::vector<RevokeWaitId> waits;
  {
    absl::MutexLock lock(&revoke_mu_);
    if (auto it = revoke_waits_by_lease_.find(lease.id); it != revoke_waits_by_lease_.end()) {
      waits = it->second;
    }
  }
  for (RevokeWaitId wait : waits) FinishRevokeWait(wait, /*revoke=*/false, /*from_timer=*/false);
}

bool PinService::IsLive(LeaseId id) const { return table_.Get(id).ok(); }

std::vector<LeaseInfo> PinService::ListFileLeases(const FileId& file) const {
  LeaseFilter filter;
  filter.file = file;
  return ListLeases(filter);
}

std::optional<ExportOptions> PinService::ExportOptionsFor(absl::string_view name) const {
  const Export* exp = FindExport(name);
  if (exp == nullptr) return std::nullopt;
  return exp->options();
}

absl::StatusOr<OpenedFile> PinService::OpenFile(const Export& exp, absl::string_view path,
                                                Access access,
                                                const std::optional<UnixCredentials>& caller) {
  ASSIGN_OR_RETURN(const ResolvedFile resolved,
                   AsCaller(caller, [&] { return exp.Resolve(path, access); }));
  return OpenResolved(exp, resolved, caller);
}

absl::StatusOr<OpenedFile> PinService::OpenResolved(const Export& exp, const ResolvedFile& resolved,
                                                    const std::optional<UnixCredentials>& caller) {
  const auto open_as_caller = [&] { return AsCaller(caller, [&] { return exp.Open(resolved); }); };
  absl::StatusOr<OpenedFile> file = open_as_caller();
  if (file.ok() || resolved.access != Access::kReadWrite || !absl::IsUnavailable(file.status())) {
    return file;
  }
  // UNAVAILABLE: a file lease refused the O_NONBLOCK open, after the kernel had granted the
  // caller's permission (may_open runs before break_lease). If it is the guard's own, have the
  // guard give it up (as the broker) and try once more (a read-only open does not break a read
  // lease).
  {
    absl::ReaderMutexLock lock(&guard_mu_);
    if (guard_ == nullptr) return file;
    guard_->YieldLease(resolved.id);
  }
  return open_as_caller();
}

absl::StatusOr<std::shared_ptr<const OpenedFile>> PinService::SharedDescriptor(
    const Export& exp, FileState& state, const ResolvedFile& resolved,
    const std::optional<UnixCredentials>& caller) {
  const bool write = resolved.access == Access::kReadWrite;
  std::shared_ptr<const OpenedFile> shared;
  {
    absl::MutexLock lock(&state.descriptors_mu);
    shared = write ? state.read_write : (state.read_only ? state.read_only : state.read_write);
  }
  if (shared != nullptr) {
    // Held already: the kernel judges the caller's right to open the inode as it is now.
    const absl::Status allowed = AsCaller(caller, [&] { return exp.CheckAccess(resolved); });
    if (allowed.ok()) return shared;
    if (!absl::IsUnimplemented(allowed)) return allowed;
  }
  ASSIGN_OR_RETURN(OpenedFile opened, OpenResolved(exp, resolved, caller));
  auto made = std::make_shared<const OpenedFile>(std::move(opened));
  absl::MutexLock lock(&state.descriptors_mu);
  std::shared_ptr<const OpenedFile>& slot = write ? state.read_write : state.read_only;
  if (slot == nullptr) slot = made;  // Else a concurrent pin's stays; this one closes with the pin.
  return made;
}

absl::StatusOr<LayoutResult> PinService::CoordinateExternal(
    const FileId& file, const ExternalChange& change, const LayoutOptions& options,
    absl::FunctionRef<absl::Status()> proceed) {
  FileRegistry::FileRef state = files_.Acquire(file);
  return coordinator_.CoordinateExternal(*state, change, options, proceed);
}

std::vector<LeaseId> PinService::LiveLeaseIds() const {
  std::vector<LeaseId> ids;
  for (const LeaseInfo& lease : table_.List(LeaseFilter{})) ids.push_back(lease.id);
  return ids;
}

std::vector<LeaseId> PinService::RecallLeases(const std::vector<LeaseId>& ids,
                                              const std::string& reason, absl::Time deadline) {
  std::vector<LeaseId> recalled;
  for (const LeaseTable::Recalled& r : lifecycle_.Recall(ids, reason, deadline)) {
    if (r.announced) recalled.push_back(r.lease.id);
  }
  return recalled;
}

LeaseTable::Subscription PinService::Watch(std::string owner, absl::AnyInvocable<void()> on_ready) {
  return table_.Subscribe(std::move(owner), std::move(on_ready));
}

size_t PinService::RecallAll(const std::string& reason, absl::Duration grace) {
  // Pending asynchronous work ends first: revoke waits revoke now, layout changes fail.
  EndAllRevokeWaits();
  coordinator_.Shutdown();
  const absl::Time deadline = clock_->Now() + grace;
  lifecycle_.Recall(LiveLeaseIds(), reason, deadline);
  table_.AwaitEmpty(deadline);
  return RevokeLeases(LiveLeaseIds(), absl::StrCat("not released within grace: ", reason));
}

}  // namespace pinbroker
