// Scenario 10 (issue 5 in the guest): other processes change files under leases behind the
// broker's back, under the export's policy (the scenario's: defer, revoke or refuse). Each case
// has a file of its own, 8 pages holding a known pattern, and a holder with a lease on pages
// [2, 6): an RDMA lease on its own connection, or a host lease where the kernel grants no RDMA
// registration for the file (fs-dax without device ODP; scenario 2 checks that refusal) or
// where the case asks for a read-only host lease (the only kind a file lease can guard: RDMA
// registrations keep a writable mapping). The holder never releases by itself.
//
// For each case the scenario
//   1. checks the broker's report (DescribeFile: guard, unguarded operations) against the cell
//      of docs/GUARD.md's matrix for this kernel, filesystem and operation (guard_cells.h);
//   2. lets a forked process make the change (oob_call.h);
//   3. checks what the cell and the policy promise: whether the caller was held, failed or let
//      through, the recall and revocation the holder saw, its RDMA before and after, and every
//      byte of the file against a model of what it must hold.
//
// The cases: truncate(2) to an unaligned size, ftruncate(2), a punch, an O_TRUNC open and a
// pwrite (which is no layout change) under a read-write lease; truncate(2) under a read-only
// host lease.
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/vm/scenarios/guard_cells.h"
#include "tests/vm/scenarios/held_lease.h"
#include "tests/vm/scenarios/oob_call.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {
namespace {

constexpr uint64_t kFileBytes = 8 * kPage;
constexpr uint64_t kLeaseOffset = 2 * kPage;
constexpr uint64_t kLeaseLength = 4 * kPage;
// Long enough to see that a held caller stays held and that nothing recalls a plain write
// (the guard's periodic check runs every second).
constexpr absl::Duration kObserve = absl::Milliseconds(1500);

struct Case {
  std::string label;
  OobChange change;
  bool read_only_host = false;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  OobChange c;
  c.op = OobOp::kTruncate;
  c.size = 5 * kPage + 100;  // Unaligned: cuts into the lease's last page.
  cases.push_back({"truncate", c});
  c = {};
  c.op = OobOp::kFtruncate;
  c.size = 3 * kPage;
  cases.push_back({"ftruncate", c});
  c = {};
  c.op = OobOp::kPunch;
  c.offset = 3 * kPage;
  c.length = kPage;
  cases.push_back({"punch", c});
  c = {};
  c.op = OobOp::kOpenTrunc;
  cases.push_back({"O_TRUNC", c});
  c = {};
  c.op = OobOp::kPwrite;
  c.offset = 3 * kPage;
  c.data = Pattern(77, c.offset, kPage);
  cases.push_back({"pwrite", c});
  c = {};
  c.op = OobOp::kTruncate;
  c.size = 5 * kPage;
  cases.push_back({"truncate, read-only host lease", c, /*read_only_host=*/true});
  return cases;
}

std::string ErrnoName(int err) { return err == 0 ? "success" : std::strerror(err); }

// What a case has to work with.
struct Run {
  Fixture& f;
  const Case& c;
  const std::string file;
  const uint64_t seed;
  HeldLease& holder;
  OutOfBandCall& call;
  std::string& model;
};

absl::Status ExpectNoRecallOrRevocation(Run& r, absl::string_view when) {
  LeaseEvents& e = r.holder.events();
  RETURN_IF_ERROR(Expect(!e.recalled(), absl::StrCat(when, ": the holder was recalled (\"",
                                                     e.recall_reason(), "\")")));
  return Expect(!e.revoked(),
                absl::StrCat(when, ": the holder was revoked (\"", e.revoke_reason(), "\")"));
}

// The caller must finish with `want` (an errno) within `timeout`.
absl::Status ExpectCallResult(Run& r, int want, absl::Duration timeout, absl::string_view why) {
  absl::StatusOr<int> got = r.call.Wait(timeout);
  if (!got.ok()) return Context(got.status(), absl::StrCat(Describe(r.c.change), " (", why, ")"));
  return Expect(*got == want,
                absl::StrCat("the other process's ", Describe(r.c.change), " ended with ",
                             ErrnoName(*got), ", expected ", ErrnoName(want), " (", why, ")"));
}

// "stale key refused" (RDMA) or "host lease revoked": what ExpectRevoked showed.
std::string Ended(const Run& r) {
  return r.holder.rdma() ? "stale key refused" : "host lease revoked";
}

// Revocation seen by the holder, its reason containing `reason`, and its key refused after.
absl::Status ExpectRevoked(Run& r, absl::string_view reason) {
  LeaseEvents& e = r.holder.events();
  RETURN_IF_ERROR(Expect(e.WaitRevoked(absl::Seconds(10)),
                         absl::StrCat("the holder's ", r.holder.Describe(),
                                      " was not revoked within 10 s of the change")));
  RETURN_IF_ERROR(Expect(absl::StrContains(e.revoke_reason(), reason),
                         absl::StrCat("revoked with reason \"", e.revoke_reason(),
                                      "\", expected one containing \"", reason, "\"")));
  return r.holder.ExpectInvalidated(r.f, r.model, "after the revocation");
}

// F or L under revoke: held, recalled, still held (the file unchanged, the lease working)
// during the grace, then revoked, and only then let through.
absl::StatusOr<std::string> HeldRecalledRevoked(Run& r) {
  LeaseEvents& e = r.holder.events();
  RETURN_IF_ERROR(Expect(e.WaitRecalled(absl::Seconds(10)),
                         absl::StrCat("the holder was never recalled; the other process's call ",
                                      r.call.Running() ? "is still held" : "has returned")));
  RETURN_IF_ERROR(
      Expect(r.call.Running(),
             absl::StrCat("the other process's call returned after ", Secs(r.call.Elapsed()),
                          ", before the recall's grace could have ended")));
  RETURN_IF_ERROR(Expect(absl::StrContains(e.recall_reason(), "out-of-band") &&
                             absl::StrContains(e.recall_reason(), "policy revoke"),
                         absl::StrCat("recalled with reason \"", e.recall_reason(),
                                      "\", expected the out-of-band change under revoke")));
  RETURN_IF_ERROR(r.f.ExpectFileIs(r.file, r.model, "during the grace (nothing applied yet)"));
  RETURN_IF_ERROR(r.holder.Use(r.f, r.model, r.seed + 2, "during the grace"));
  RETURN_IF_ERROR(ExpectCallResult(r, 0, absl::Seconds(30), "revoke lets it through"));
  Apply(r.c.change, r.model);
  RETURN_IF_ERROR(r.f.ExpectFileIs(r.file, r.model, "after the change"));
  RETURN_IF_ERROR(ExpectRevoked(r, ""));
  return absl::StrCat("held ", Secs(r.call.Elapsed()),
                      ", recalled, lease used during the grace, revoked, applied, ", Ended(r));
}

// F or L under defer: held while the lease lives (the file unchanged, the lease working, no
// recall), let through once the holder releases.
absl::StatusOr<std::string> HeldUntilReleased(Run& r) {
  absl::SleepFor(kObserve);
  RETURN_IF_ERROR(
      Expect(r.call.Running(), absl::StrCat("the other process's call returned after ",
                                            Secs(r.call.Elapsed()), " while the lease was held")));
  RETURN_IF_ERROR(ExpectNoRecallOrRevocation(r, "while deferred"));
  RETURN_IF_ERROR(r.f.ExpectFileIs(r.file, r.model, "while deferred (nothing applied yet)"));
  RETURN_IF_ERROR(r.holder.Use(r.f, r.model, r.seed + 2, "while deferred"));
  const absl::Time released = absl::Now();
  RETURN_IF_ERROR(Context(r.holder.Release(), "release"));
  RETURN_IF_ERROR(ExpectCallResult(r, 0, absl::Seconds(30),
                                   "defer lets it through after the "
                                   "release"));
  Apply(r.c.change, r.model);
  RETURN_IF_ERROR(r.f.ExpectFileIs(r.file, r.model, "after the change"));
  RETURN_IF_ERROR(ExpectNoRecallOrRevocation(r, "after the release"));
  return absl::StrCat("held ", Secs(r.call.Elapsed()), " with the lease working, let through ",
                      Secs(absl::Now() - released), " after the release");
}

// F under refuse: the caller fails at once; the file and the lease are untouched.
absl::StatusOr<std::string> Refused(Run& r) {
  const int want = RefusedErrno(r.f.env());
  RETURN_IF_ERROR(ExpectCallResult(r, want, absl::Seconds(10), "refuse fails the caller"));
  RETURN_IF_ERROR(r.f.ExpectFileIs(r.file, r.model, "after the refusal (file unchanged)"));
  RETURN_IF_ERROR(ExpectNoRecallOrRevocation(r, "after the refusal"));
  RETURN_IF_ERROR(r.holder.Use(r.f, r.model, r.seed + 2, "after the refusal"));
  return absl::StrCat("failed with ", ErrnoName(want), " in ", Secs(r.call.Elapsed()),
                      ", file and lease untouched");
}

// L under refuse: a file-lease breaker cannot be failed, so the lease is revoked at once and
// the caller goes ahead.
absl::StatusOr<std::string> LeaseBreakUnderRefuse(Run& r) {
  RETURN_IF_ERROR(ExpectCallResult(r, 0, absl::Seconds(30), "a lease breaker cannot be failed"));
  Apply(r.c.change, r.model);
  RETURN_IF_ERROR(r.f.ExpectFileIs(r.file, r.model, "after the change"));
  RETURN_IF_ERROR(ExpectRevoked(r, ""));
  return absl::StrCat("revoked at once, let through in ", Secs(r.call.Elapsed()), ", ", Ended(r));
}

// D: the change happens at once; the broker notices and revokes with "out-of-band change".
absl::StatusOr<std::string> DetectedAfter(Run& r) {
  RETURN_IF_ERROR(ExpectCallResult(r, 0, absl::Seconds(10), "nothing intercepts it"));
  Apply(r.c.change, r.model);
  RETURN_IF_ERROR(r.f.ExpectFileIs(r.file, r.model, "after the change"));
  const absl::Time t0 = absl::Now();
  RETURN_IF_ERROR(ExpectRevoked(r, "out-of-band change"));
  return absl::StrCat("applied at once, revoked (out-of-band change) ", Secs(absl::Now() - t0),
                      " later, ", Ended(r));
}

// -: a plain write proceeds, recalls nothing, and the holder's RDMA sees its bytes.
absl::StatusOr<std::string> PlainWrite(Run& r) {
  RETURN_IF_ERROR(ExpectCallResult(r, 0, absl::Seconds(10), "a write is no layout change"));
  Apply(r.c.change, r.model);
  RETURN_IF_ERROR(r.f.ExpectFileIs(r.file, r.model, "after the write"));
  const absl::Duration took = r.call.Elapsed();
  absl::SleepFor(kObserve);
  RETURN_IF_ERROR(ExpectNoRecallOrRevocation(r, "after the write"));
  RETURN_IF_ERROR(r.holder.Use(r.f, r.model, r.seed + 2, "after the other process's write"));
  return absl::StrCat("returned in ", Secs(took), ", nothing recalled",
                      r.holder.rdma() ? ", RDMA READ sees its bytes" : ", lease still granted");
}

// Checks the broker's report for the file against the documented cell.
absl::Status ExpectReport(Fixture& f, Peer& admin, const std::string& file, const Case& c,
                          const DocumentedCell& cell, std::string* guard) {
  auto described = admin.client->DescribeFile(f.export_name(), file);
  if (!described.ok()) return Context(described.status(), "DescribeFile");
  *guard = described->guard();
  const absl::string_view entry = UnguardedEntry(c.change.op);
  const bool listed = !entry.empty() && Contains(described->unguarded_operations(), entry);
  const bool want_listed = cell.cell == Cell::kDetectedAfter;
  const std::string report =
      absl::StrCat("DescribeFile reports guard \"", described->guard(), "\", unguarded [",
                   absl::StrJoin(described->unguarded_operations(), "; "), "]");
  RETURN_IF_ERROR(
      Expect(listed == want_listed,
             absl::StrCat(report, ": ", Describe(c.change), " is ",
                          listed ? "unguarded" : "guarded", ", but docs/GUARD.md's matrix says ",
                          CellCode(cell.cell), " (", cell.why, ")")));
  if (cell.cell == Cell::kFileLease) {
    RETURN_IF_ERROR(Expect(absl::StrContains(*guard, "lease"),
                           absl::StrCat(report, ", but the matrix says L (", cell.why, ")")));
  }
  if (cell.cell == Cell::kFanotify) {
    RETURN_IF_ERROR(Expect(absl::StrContains(*guard, "fanotify"),
                           absl::StrCat(report, ", but the matrix says F (", cell.why, ")")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RunCase(Fixture& f, Peer& admin, const Case& c, int index,
                                    bool rdma_possible) {
  const std::string file = absl::StrCat("s10-", index, ".dat");
  const uint64_t seed = 1000 + 10 * index;
  RETURN_IF_ERROR(f.CreateFile(file, kFileBytes, seed));
  std::string model = Pattern(seed, 0, kFileBytes);
  HeldLease::Spec spec;
  spec.client_name = absl::StrCat("s10-holder-", index);
  spec.file = file;
  spec.offset = kLeaseOffset;
  spec.length = kLeaseLength;
  spec.rdma = rdma_possible && !c.read_only_host;
  spec.writable = !c.read_only_host;
  ASSIGN_OR_RETURN(std::unique_ptr<HeldLease> holder, HeldLease::Pin(f, spec));
  RETURN_IF_ERROR(holder->Use(f, model, seed + 1, "before the change"));

  const DocumentedCell cell =
      ExpectedCell(f.env(), f.fs(), c.change.op, /*writable_mapping=*/spec.rdma || spec.writable);
  std::string guard;
  RETURN_IF_ERROR(ExpectReport(f, admin, file, c, cell, &guard));

  ASSIGN_OR_RETURN(std::unique_ptr<OutOfBandCall> call,
                   OutOfBandCall::Start(f.Path(file), c.change));
  Run r{f, c, file, seed, *holder, *call, model};
  absl::StatusOr<std::string> outcome;
  const v1::LayoutPolicy policy = f.policy();
  switch (cell.cell) {
    case Cell::kFanotify:
    case Cell::kFileLease:
      if (policy == v1::LAYOUT_POLICY_REVOKE) {
        outcome = HeldRecalledRevoked(r);
      } else if (policy == v1::LAYOUT_POLICY_DEFER) {
        outcome = HeldUntilReleased(r);
      } else if (cell.cell == Cell::kFanotify) {
        outcome = Refused(r);
      } else {
        outcome = LeaseBreakUnderRefuse(r);
      }
      break;
    case Cell::kDetectedAfter:
      outcome = DetectedAfter(r);
      break;
    case Cell::kNotAChange:
      outcome = PlainWrite(r);
      break;
  }
  const std::string what = absl::StrCat(c.label, " [", CellCode(cell.cell), ", guard ", guard, ", ",
                                        holder->rdma() ? "RDMA" : "host", "]");
  if (!outcome.ok()) {
    return Context(outcome.status(),
                   absl::StrCat(what, " ", Describe(c.change), " under ", holder->Describe()));
  }
  return absl::StrCat(what, ": ", *outcome);
}

}  // namespace

absl::Status OutOfBandChanges(Fixture& f, Notes& notes) {
  const bool rdma_possible = !f.fs().dax || f.env().odp.rc_read_write;
  notes.Add("policy ", v1::LayoutPolicy_Name(f.policy()), "; read-write leases are ",
            rdma_possible ? "RDMA leases"
                          : absl::StrCat("host leases (", f.env().rxe0,
                                         " has no RC ODP: no RDMA registration of fs-dax files)"));
  ASSIGN_OR_RETURN(auto admin, f.Connect("s10-admin", /*rdma=*/false));
  const std::vector<Case> cases = Cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSIGN_OR_RETURN(std::string outcome,
                     RunCase(f, *admin, cases[i], static_cast<int>(i), rdma_possible));
    notes.Add(outcome);
  }
  return absl::OkStatus();
}

}  // namespace pinbroker::scenarios
