// Scenario 6: two clients hold leases on disjoint ranges of one file: "steady" on pages 0-1,
// "punched" on pages 4-5 (ignoring recalls, so its lease is really revoked). A hole is punched
// over pages 4-5 with the revoke policy while "steady" runs RDMA WRITE + pread + RDMA READ
// rounds without pause. Checked: only the punched lease is recalled and revoked; "steady" sees
// no recall, no error and keeps its lease and connection; its rounds ran before, during and
// after the punch; the hole reads as zeros and every other byte is as written.
#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {
namespace {

// RDMA rounds on one lease in a thread, each checked byte for byte.
class Writer {
 public:
  Writer(Fixture& f, client::RdmaLease& lease, Peer& peer) : f_(f), lease_(lease), peer_(peer) {}
  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Rounds that completed OK in [from, to).
  int RoundsBetween(absl::Time from, absl::Time to) const {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (absl::Time t : done_) n += (t >= from && t < to);
    return n;
  }
  int rounds() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(done_.size());
  }
  absl::Status error() const {
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  void Run() {
    const uint64_t pages = lease_.length() / kPage;
    for (uint64_t k = 0; !stop_; ++k) {
      const uint64_t page = k % pages;
      const uint64_t file_offset = lease_.lease().range().offset + page * kPage;
      absl::Status s =
          WriteAndCheck(f_, lease_, peer_, page * kPage, Pattern(600 + k, file_offset, kPage),
                        absl::StrCat("steady round ", k));
      if (s.ok()) {
        s = ReadAndCheck(f_, lease_, peer_, page * kPage, kPage, absl::StrCat("steady round ", k));
      }
      absl::MutexLock lock(&mu_);
      if (!s.ok()) {
        error_ = s;
        return;
      }
      done_.push_back(absl::Now());
    }
  }

  Fixture& f_;
  client::RdmaLease& lease_;
  Peer& peer_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::vector<absl::Time> done_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::Status PunchDisjointLeases(Fixture& f, Notes& notes) {
  constexpr uint64_t kFile = 8 * kPage;
  constexpr uint64_t kSteady = 0, kPunched = 4 * kPage, kLength = 2 * kPage;
  const char* kName = "s6.dat";
  RETURN_IF_ERROR(f.CreateFile(kName, kFile, 6));
  ASSIGN_OR_RETURN(auto admin, f.Connect("s6-admin", /*rdma=*/false));
  ASSIGN_OR_RETURN(auto steady, f.Connect("s6-steady"));
  ASSIGN_OR_RETURN(auto punched, f.Connect("s6-punched"));
  LeaseEvents steady_events, punched_events;
  client::RdmaPinOptions a = f.PinOptions(kName, kSteady, kLength);
  steady_events.Hook(a);
  client::RdmaPinOptions b = f.PinOptions(kName, kPunched, kLength);
  b.stop_on_recall = false;
  b.release_on_recall = false;
  punched_events.Hook(b);
  auto la = client::RdmaLease::Pin(*steady->client, *steady->rdma, a);
  if (!la.ok()) return Context(la.status(), "steady's pin");
  auto lb = client::RdmaLease::Pin(*punched->client, *punched->rdma, b);
  if (!lb.ok()) return Context(lb.status(), "punched's pin");
  notes.Add("steady ", DescribeLease(**la), ", punched ", DescribeLease(**lb));
  RETURN_IF_ERROR(
      WriteAndCheck(f, **lb, *punched, 0, Pattern(610, kPunched, kLength), "punched's write"));

  Writer writer(f, **la, *steady);
  writer.Start();
  // At least 3 checked rounds before the punch and 3 after it (bounded: the writer may fail).
  const absl::Time warmup_limit = absl::Now() + absl::Seconds(10);
  while (writer.rounds() < 3 && absl::Now() < warmup_limit && writer.error().ok()) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  client::LayoutOptions options;
  options.policy = v1::LAYOUT_POLICY_REVOKE;
  const absl::Time t0 = absl::Now();
  auto result = admin->client->PunchHole(f.export_name(), kName, kPunched, kLength, options);
  const absl::Time t1 = absl::Now();
  const absl::Time cooldown_limit = absl::Now() + absl::Seconds(10);
  while (writer.RoundsBetween(t1, absl::InfiniteFuture()) < 3 && absl::Now() < cooldown_limit &&
         writer.error().ok()) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  writer.Stop();
  const int before = writer.RoundsBetween(absl::InfinitePast(), t0);
  const int during = writer.RoundsBetween(t0, t1);
  const int after = writer.RoundsBetween(t1, absl::InfiniteFuture());
  RETURN_IF_ERROR(Context(writer.error(), "steady client's RDMA"));
  if (!result.ok()) return Context(result.status(), "punch hole (revoke)");
  const std::string& ida = (*la)->id();
  const std::string& idb = (*lb)->id();
  RETURN_IF_ERROR(Expect(
      result->recalled_lease_ids_size() == 1 && Contains(result->recalled_lease_ids(), idb) &&
          Contains(result->revoked_lease_ids(), idb) && !Contains(result->revoked_lease_ids(), ida),
      absl::StrCat("expected only ", idb,
                   " recalled and revoked; got "
                   "recalled=",
                   JoinIds(result->recalled_lease_ids()),
                   " revoked=", JoinIds(result->revoked_lease_ids()))));
  RETURN_IF_ERROR(Expect(!steady_events.recalled() && !steady_events.revoked(),
                         "the steady client's lease was recalled or revoked"));
  RETURN_IF_ERROR(
      Expect((*la)->state() == client::LeaseState::kGranted,
             absl::StrCat("steady's lease is ", client::LeaseStateName((*la)->state()))));
  RETURN_IF_ERROR(Expect(punched_events.WaitRevoked(absl::Seconds(10)),
                         "the punched client never got REVOKED"));
  RETURN_IF_ERROR(Context(steady->rdma->status(), "steady's connection"));
  RETURN_IF_ERROR(Expect(before > 0 && during > 0 && after > 0,
                         absl::StrCat("steady rounds before/during/after the punch: ", before, "/",
                                      during, "/", after, " (each must be > 0)")));
  notes.Add("punch took ", Secs(t1 - t0), ", revoked only ", idb,
            "; steady's checked RDMA rounds "
            "before/during/after: ",
            before, "/", during, "/", after, ", no error, no recall");
  ASSIGN_OR_RETURN(uint64_t size, f.FileSize(kName));
  RETURN_IF_ERROR(Expect(size == kFile, absl::StrCat("file size ", size, ", expected ", kFile)));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kPunched, std::string(kLength, '\0'), "the hole"));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kLength, Pattern(6, kLength, kPunched - kLength),
                                    "bytes between the leases"));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kPunched + kLength,
                                    Pattern(6, kPunched + kLength, kFile - kPunched - kLength),
                                    "bytes after the hole"));
  RETURN_IF_ERROR(
      WriteAndCheck(f, **la, *steady, 0, Pattern(620, kSteady, kLength), "steady's final write"));
  notes.Add("hole reads as zeros, other bytes as written");
  return Context((*la)->Release(), "steady's release");
}

}  // namespace pinbroker::scenarios
