// The acceptance scenarios of the RDMA issue (tests/vm/scenarios/README.md), one function each,
// and the table that instantiates them per filesystem.
//
// A scenario body gets a Fixture whose broker is running and returns OK (PASS, with its Notes
// as the detail), OK with Notes::skip set (SKIP), or an error whose message is the FAIL detail.
// The runner stops the broker afterwards and fails the scenario if it does not exit 0.
//
// Thread-safety: bodies run one at a time, each in its own process.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tests/vm/scenarios/environment.h"
#include "tests/vm/scenarios/fixture.h"

namespace pinbroker::scenarios {

using ScenarioBody = absl::Status (*)(Fixture& f, Notes& notes);

struct ScenarioDef {
  std::string name;  // "3-truncate-revoke-cooperative[tmpfs]"
  std::string fs;    // Filesystem name.
  ScenarioBody body = nullptr;
  std::string skip;  // Non-empty: reported as SKIP with this reason, not run.
  absl::Duration grace = absl::Seconds(2);  // The exports' revoke grace.
  // The exports' default policy, which out-of-band changes get.
  v1::LayoutPolicy policy = v1::LAYOUT_POLICY_REVOKE;
};

std::vector<ScenarioDef> BuildScenarios(const VmEnv& env);

// 1. tmpfs, pinned registration: RDMA WRITE and READ from rxe1; bytes checked in the file.
absl::Status PinnedWriteRead(Fixture& f, Notes& notes);
// 2. fs-dax: refused naming ODP without device ODP; granted in ODP mode with it.
absl::Status DaxOdp(Fixture& f, Notes& notes);
// 3. Truncate (revoke) with a cooperative holder: recall, drain, release, applied, no error.
absl::Status TruncateRevokeCooperative(Fixture& f, Notes& notes);
// 4. Truncate (revoke) with a holder ignoring the recall: window invalidated after the grace.
absl::Status TruncateRevokeIgnored(Fixture& f, Notes& notes);
// 5. defer waits for the release; refuse fails naming the lease.
absl::Status TruncateDefer(Fixture& f, Notes& notes);
absl::Status TruncateRefuse(Fixture& f, Notes& notes);
// 6. Punching one of two disjoint leases revokes only it; the other keeps working.
absl::Status PunchDisjointLeases(Fixture& f, Notes& notes);
// 7. A holder killed with SIGKILL: windows before QP, leases revoked, bounded time.
absl::Status SigkillHolder(Fixture& f, Notes& notes);
// 8. A lease's rkey used over another client's connection is refused.
absl::Status ForeignRkey(Fixture& f, Notes& notes);
// 9. Another process's truncate(2) under an RDMA lease: held and recalled where the guard covers
// truncate(2), detected and revoked ("out-of-band change") where DescribeFile says it cannot.
absl::Status OutOfBandTruncate(Fixture& f, Notes& notes);
// 10. Other processes' truncate(2), ftruncate(2), punch, O_TRUNC open and pwrite against files
// under RDMA leases (host leases where the kernel grants no RDMA registration), under the
// export's policy (the ScenarioDef's): the guard's report must match docs/GUARD.md's matrix, and
// each operation, the file's bytes and the holder's RDMA must behave as that cell promises.
absl::Status OutOfBandChanges(Fixture& f, Notes& notes);

// The hidden `hold` subcommand (scenario 7's victim): pins leases with RDMA, writes them,
// prints "READY session=<id> leases=<id>,<id>" and waits to be killed.
int HoldMain(int argc, char** argv);

}  // namespace pinbroker::scenarios
