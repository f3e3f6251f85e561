#include "tests/vm/scenarios/scenarios.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace pinbroker::scenarios {

std::vector<ScenarioDef> BuildScenarios(const VmEnv& env) {
  std::vector<ScenarioDef> out;
  auto add = [&](std::string id, std::string fs, ScenarioBody body, std::string skip = "") {
    out.push_back(ScenarioDef{absl::StrCat(id, "[", fs, "]"), fs, body, std::move(skip)});
  };
  add("1-pinned-write-read", "tmpfs", PinnedWriteRead);
  add("2-dax-odp", "ext4dax", DaxOdp);
  add("2-dax-odp", "xfsdax", DaxOdp);
  // 3-8 on tmpfs (pinned) and on ext4-dax where the device grants ODP.
  const std::string no_odp =
      env.odp.rc_read_write
          ? ""
          : absl::StrCat(env.rxe0, " has no RC ODP (", env.odp.Describe(),
                         "): fs-dax files cannot be registered, scenario 2 checks the refusal");
  for (const std::string fs : {"tmpfs", "ext4dax"}) {
    const std::string skip = fs == "tmpfs" ? "" : no_odp;
    add("3-truncate-revoke-cooperative", fs, TruncateRevokeCooperative, skip);
    add("4-truncate-revoke-ignored", fs, TruncateRevokeIgnored, skip);
    add("5-truncate-defer", fs, TruncateDefer, skip);
    add("5-truncate-refuse", fs, TruncateRefuse, skip);
    add("6-punch-disjoint-leases", fs, PunchDisjointLeases, skip);
    add("7-sigkill-holder", fs, SigkillHolder, skip);
    add("8-foreign-rkey", fs, ForeignRkey, skip);
  }
  // Issue 5 in the guest: an out-of-band truncate(2) under an RDMA lease.
  add("9-out-of-band-truncate", "tmpfs", OutOfBandTruncate);
  add("9-out-of-band-truncate", "ext4dax", OutOfBandTruncate, no_odp);
  add("9-out-of-band-truncate", "xfsdax", OutOfBandTruncate, no_odp);
  // Issue 5 in the guest: every out-of-band operation under every policy. Where rxe0 has no
  // ODP, fs-dax files get host leases (the RDMA refusal is scenario 2's).
  for (const std::string fs : {"tmpfs", "ext4dax", "xfsdax"}) {
    for (const v1::LayoutPolicy policy :
         {v1::LAYOUT_POLICY_DEFER, v1::LAYOUT_POLICY_REVOKE, v1::LAYOUT_POLICY_REFUSE}) {
      std::string name(absl::AsciiStrToLower(v1::LayoutPolicy_Name(policy)));
      absl::StrReplaceAll({{"layout_policy_", "10-oob-"}}, &name);
      add(name, fs, OutOfBandChanges);
      out.back().policy = policy;
      // Long enough for the scenario to see the caller held and use the lease during it.
      out.back().grace = absl::Seconds(4);
    }
  }
  return out;
}

}  // namespace pinbroker::scenarios
