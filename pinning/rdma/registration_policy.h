// How the verbs backend registers a file range for a lease: which registration modes to try,
// in which order, with which access flags; what a kernel refusal means; what to tell a client
// when nothing works; and which transfer constraints a lease carries. Pure functions of the
// file, the lease's access and the device's capabilities, so every rule is unit-tested without
// a device (tests/pinning/rdma/registration_policy_test.cc).
//
// The rules follow what the kernel allows (measured on Linux 6.1, 6.12, 6.17 and 7.3):
//   * tmpfs/shmem, hugetlbfs (and ramfs) pages can be long-term pinned, writable or not;
//   * fs-dax pages can never be long-term pinned (EOPNOTSUPP): they need ODP;
//   * page-cache files can be pinned read-only on every kernel, and writable only before 6.5
//     (EFAULT from 6.5 on): writable ones need ODP there.
//   * A region that memory windows are bound on must be registered with MW_BIND, which the
//     kernel counts as write access: a *pinned* region with windows needs a writable mapping.
//     An ODP region faults pages in only for the access each transfer makes, so a read-only
//     mapping works for it.
// Leases get a type-2 memory window on a per-file region shared with other leases, so their
// key is tied to the owner's queue pair. Where the device does not enforce a window's bounds
// (rxe checks only the underlying region's), the region is the lease's own bytes instead, so
// its window cannot reach further. A lease region with its own key is the fallback where
// windows are impossible (no type-2 windows on the device; a read lease on a page-cache file
// with no ODP); that key works on any of the broker's connections on that device.
//
// Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pinning/file_info.h"
#include "pinning/lease.h"
#include "pinning/rdma/device_caps.h"

namespace pinbroker::rdma {

// What kind of memory backs a file, as far as long-term pinning goes.
enum class FileKind {
  kShmem,      // tmpfs/shmem, hugetlbfs, ramfs: pinnable, writable or not.
  kDax,        // fs-dax (STATX_ATTR_DAX): never pinnable; ODP only.
  kPageCache,  // Everything else: pinnable read-only; writable only before Linux 6.5.
};
FileKind ClassifyFile(const FileInfo& file);
absl::string_view FileKindName(FileKind kind);

// What a region registered for a lease covers.
enum class RegionScope {
  kFile,   // The file from offset 0: cached per (device, file, mode, writable), shared by leases.
  kLease,  // Exactly the lease's bytes: registered for it and gone with it.
};

// One way to register a lease's range.
struct Candidate {
  RegistrationMode mode = RegistrationMode::kPinned;
  RegionScope scope = RegionScope::kFile;
  // true: the lease's key is a type-2 memory window over exactly its bytes, bound on the owner's
  // queue pair, on a region that grants nothing remote itself. false (only without usable
  // windows): the key is a lease-scope region's own, with exactly the lease's remote access.
  bool window = true;
  // The broker maps (and registers) the file writable. For a read lease this needs a writable
  // view of the file that the lease's own descriptor does not give.
  bool writable = false;

  bool cached() const { return scope == RegionScope::kFile; }
  friend bool operator==(const Candidate&, const Candidate&) = default;
};
// "pinned file region + window", "odp lease region (read-only) + window", "pinned lease region
// (read-only, its own key)".
std::string DescribeCandidate(const Candidate& candidate);

// The candidates to try, best first, and why the others were ruled out (one sentence each).
struct Plan {
  std::vector<Candidate> candidates;
  std::vector<std::string> ruled_out;
};

// `path_mtu`: the owner's connection's path MTU in bytes (ODP on rxe needs 4096).
Plan PlanRegistration(FileKind kind, Access access, const DeviceCaps& caps, uint32_t path_mtu);

// Whether a registration refused with `err` should go on to the next candidate (the kernel
// refused this kind of registration for this memory) rather than fail the pin (limits, bugs).
bool RefusalTriesNext(RegistrationMode mode, int err);

// "kernel refused: EFAULT (Bad address): Linux >= 6.5 refuses writable long-term pins of
// page-cache files" for a refusal of `candidate` on a file of `kind`.
std::string ExplainRefusal(const Candidate& candidate, FileKind kind, int err);

// FAILED_PRECONDITION for a lease no candidate could register: `what` names the lease and file,
// `tried` lists each candidate's outcome (and the plan's ruled_out reasons); the message ends
// with what would work, naming ODP.
absl::Status NoModeError(absl::string_view what, const DeviceCaps& caps, FileKind kind,
                         Access access, const std::vector<std::string>& tried);

// ibv_access_flags for registering `candidate` for a lease with `access`:
//   regions for windows: LOCAL_WRITE|MW_BIND (writable) or MW_BIND, never remote rights;
//   regions with their own key: exactly the lease's remote rights (plus LOCAL_WRITE when
//   writable); plus ON_DEMAND for odp.
int RegionAccessFlags(const Candidate& candidate, Access access, const DeviceCaps& caps);

// ibv_access_flags for a lease's memory window: REMOTE_READ, or REMOTE_READ|REMOTE_WRITE plus
// REMOTE_ATOMIC (unless an ODP region's device cannot do atomics on ODP).
int WindowAccessFlags(Access access, RegistrationMode mode, const DeviceCaps& caps);

// Transfer constraints a lease in `mode` on `caps` carries (RdmaGrant fields).
struct TransferConstraints {
  uint64_t required_alignment = 1;
  uint64_t max_transfer_size = 0;
  std::string reason;
};
TransferConstraints ConstraintsFor(const DeviceCaps& caps, RegistrationMode mode,
                                   uint64_t page_size);

}  // namespace pinbroker::rdma
