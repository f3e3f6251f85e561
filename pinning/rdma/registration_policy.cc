#include "pinning/rdma/registration_policy.h"

#include <infiniband/verbs.h>
#include <linux/magic.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"

namespace pinbroker::rdma {
namespace {

#ifndef RAMFS_MAGIC
#define RAMFS_MAGIC 0x858458f6
#endif

constexpr uint32_t kOdpPathMtu = 4096;

// Empty if `caps` can serve a lease with `access` from an ODP region over a connection with
// `path_mtu`; otherwise why not, as one sentence.
std::string OdpUnusable(const DeviceCaps& caps, Access access, uint32_t path_mtu) {
  if (!caps.odp.supported) {
    return absl::StrCat("odp: device ", caps.name, " has no on-demand paging (ODP)");
  }
  std::vector<std::string> missing;
  if (!caps.odp.read) missing.push_back("read");
  if (access == Access::kReadWrite && !caps.odp.write) missing.push_back("write");
  if (!missing.empty()) {
    return absl::StrCat("odp: device ", caps.name, "'s RC on-demand paging lacks remote ",
                        absl::StrJoin(missing, " and "));
  }
  if (caps.soft_roce && path_mtu < kOdpPathMtu) {
    return absl::StrCat(
        "odp: the connection's path MTU is ", path_mtu,
        " bytes, and rxe's ODP copy path misplaces "
        "data unless every packet is one whole page; set the MTU of ",
        caps.name,
        "'s network device to 4200 or more (ip link set DEV mtu 9000) so its active_mtu is 4096, "
        "then reconnect");
  }
  return "";
}

std::string DaxNeverPinned() { return "pinned: fs-dax pages cannot be long-term pinned"; }

}  // namespace

FileKind ClassifyFile(const FileInfo& file) {
  if (file.dax) return FileKind::kDax;
  switch (file.fs_magic) {
    case TMPFS_MAGIC:
    case HUGETLBFS_MAGIC:
    case RAMFS_MAGIC:
      return FileKind::kShmem;
    default:
      return FileKind::kPageCache;
  }
}

absl::string_view FileKindName(FileKind kind) {
  switch (kind) {
    case FileKind::kShmem:
      return "shmem";
    case FileKind::kDax:
      return "fs-dax";
    case FileKind::kPageCache:
      return "page cache";
  }
  return "?";
}

std::string DescribeCandidate(const Candidate& c) {
  return absl::StrCat(RegistrationModeName(c.mode),
                      c.scope == RegionScope::kFile ? " file region" : " lease region",
                      c.writable ? "" : " (read-only)", c.window ? " + window" : " (its own key)");
}

Plan PlanRegistration(FileKind kind, Access access, const DeviceCaps& caps, uint32_t path_mtu) {
  Plan plan;
  const bool rw = access == Access::kReadWrite;
  const std::string odp_unusable = OdpUnusable(caps, access, path_mtu);
  // A window on a file region, or on a region of exactly the lease where windows are not
  // bounded by the device; or a lease region with its own key where windows are impossible.
  const RegionScope window_scope =
      caps.window_bounds_enforced ? RegionScope::kFile : RegionScope::kLease;
  auto windowed = [&](RegistrationMode mode, bool writable) {
    return Candidate{mode, window_scope, true, writable};
  };
  auto own_key = [](RegistrationMode mode, bool writable) {
    return Candidate{mode, RegionScope::kLease, false, writable};
  };
  auto add_odp = [&](Candidate c) {
    if (odp_unusable.empty()) {
      plan.candidates.push_back(c);
    } else {
      plan.ruled_out.push_back(odp_unusable);
    }
  };
  if (!caps.has_type2_windows()) {
    plan.ruled_out.push_back(absl::StrCat(
        "memory windows: device ", caps.name,
        " has no type-2 memory windows, so the lease gets a region with a key of its own"));
    if (kind == FileKind::kDax) {
      plan.ruled_out.push_back(DaxNeverPinned());
    } else {
      plan.candidates.push_back(own_key(RegistrationMode::kPinned, rw));
    }
    add_odp(own_key(RegistrationMode::kOdp, rw));
    return plan;
  }
  if (rw) {
    if (kind == FileKind::kDax) {
      plan.ruled_out.push_back(DaxNeverPinned());
    } else {
      plan.candidates.push_back(windowed(RegistrationMode::kPinned, true));
    }
    add_odp(windowed(RegistrationMode::kOdp, true));
    return plan;
  }
  switch (kind) {
    case FileKind::kShmem:
      // Windows need MW_BIND, which the kernel treats as write access: a pinned region for
      // them needs a writable view. Shmem can be pinned writable harmlessly.
      plan.candidates.push_back(windowed(RegistrationMode::kPinned, true));
      add_odp(windowed(RegistrationMode::kOdp, false));
      plan.candidates.push_back(own_key(RegistrationMode::kPinned, false));
      break;
    case FileKind::kDax:
      plan.ruled_out.push_back(DaxNeverPinned());
      add_odp(windowed(RegistrationMode::kOdp, false));
      break;
    case FileKind::kPageCache:
      // A pinned region for windows would be a writable long-term pin of page cache: refused
      // from Linux 6.5 on, and before that it would dirty every page of a file only read.
      add_odp(windowed(RegistrationMode::kOdp, false));
      plan.candidates.push_back(own_key(RegistrationMode::kPinned, false));
      break;
  }
  return plan;
}

bool RefusalTriesNext(RegistrationMode mode, int err) {
  if (mode == RegistrationMode::kOdp) {
    return err == EOPNOTSUPP || err == EINVAL || err == EFAULT;
  }
  return err == EOPNOTSUPP || err == EFAULT;
}

std::string ExplainRefusal(const Candidate& candidate, FileKind kind, int err) {
  std::string out = absl::StrCat(DescribeCandidate(candidate), ": the kernel refused (",
                                 ErrnoDescription(err), ")");
  if (candidate.mode == RegistrationMode::kPinned) {
    if (err == EOPNOTSUPP && kind == FileKind::kDax) {
      absl::StrAppend(&out, ": fs-dax pages cannot be long-term pinned");
    } else if (err == EFAULT && kind == FileKind::kPageCache && candidate.writable) {
      absl::StrAppend(&out,
                      ": Linux 6.5 and later refuse writable long-term pins of page-cache "
                      "files");
    }
  } else if (err == EOPNOTSUPP || err == EINVAL) {
    absl::StrAppend(&out, ": this kernel's driver does not register ODP regions");
  }
  return out;
}

absl::Status NoModeError(absl::string_view what, const DeviceCaps& caps, FileKind kind,
                         Access access, const std::vector<std::string>& tried) {
  const bool rw = access == Access::kReadWrite;
  std::string odp_device = absl::StrCat(
      "an RDMA device with RC on-demand paging (ODP) for remote read", rw ? " and write" : "",
      " (rdma_rxe has it on Linux 6.17 and later; 6.1 and 6.12 do not)");
  std::string would_work;
  switch (kind) {
    case FileKind::kDax:
      would_work = absl::StrCat(odp_device, "; fs-dax files cannot be served without ODP");
      break;
    case FileKind::kPageCache:
      would_work =
          absl::StrCat(odp_device, rw ? ", a read-only lease, or the file on tmpfs or hugetlbfs"
                                      : ", or the file on tmpfs or hugetlbfs");
      break;
    case FileKind::kShmem:
      would_work = absl::StrCat(odp_device, ", or more locked-memory headroom for the broker");
      break;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot register ", what, " (", FileKindName(kind), ", ", AccessName(access),
                   ") for RDMA on ", caps.name, ": ",
                   tried.empty() ? "nothing to try" : absl::StrJoin(tried, "; "),
                   ". What would work: ", would_work));
}

int RegionAccessFlags(const Candidate& candidate, Access access, const DeviceCaps& caps) {
  int flags = 0;
  if (candidate.window) {
    flags = IBV_ACCESS_MW_BIND | (candidate.writable ? IBV_ACCESS_LOCAL_WRITE : 0);
  } else {
    flags = WindowAccessFlags(access, candidate.mode, caps);
    if (candidate.writable) flags |= IBV_ACCESS_LOCAL_WRITE;
  }
  if (candidate.mode == RegistrationMode::kOdp) flags |= IBV_ACCESS_ON_DEMAND;
  return flags;
}

int WindowAccessFlags(Access access, RegistrationMode mode, const DeviceCaps& caps) {
  if (access == Access::kRead) return IBV_ACCESS_REMOTE_READ;
  int flags = IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
  if (mode != RegistrationMode::kOdp || caps.odp.atomic) flags |= IBV_ACCESS_REMOTE_ATOMIC;
  return flags;
}

TransferConstraints ConstraintsFor(const DeviceCaps& caps, RegistrationMode mode,
                                   uint64_t page_size) {
  TransferConstraints out;
  if (caps.soft_roce && mode == RegistrationMode::kOdp) {
    out.required_alignment = page_size;
    out.reason = kRxeOdpPlacementQuirk;
  }
  return out;
}

}  // namespace pinbroker::rdma
