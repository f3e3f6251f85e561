// What every scenario works with: a fresh pinbrokerd (BrokerProcess) exporting a fresh directory
// on each filesystem, the filesystem under test, clients (gRPC session + RDMA connection from
// the client-side address), and byte-level helpers: every data check compares the bytes in the
// file (pread) with what was written, never only a completion status.
//
// Thread-safety: Fixture is used by the scenario's main thread; Peer and the free functions may
// be used from any one thread per Peer (a Peer's buffer is not shared between threads).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pinbroker/client.h"
#include "pinbroker/rdma_connection.h"
#include "pinbroker/rdma_lease.h"
#include "tests/vm/scenarios/broker_process.h"
#include "tests/vm/scenarios/environment.h"

namespace pinbroker::scenarios {

inline constexpr uint64_t kPage = 4096;

// What a scenario reports: measured facts, joined into its result line; or why it was skipped.
struct Notes {
  std::vector<std::string> items;
  std::string skip;  // Non-empty: the scenario does not apply (SKIP with this reason).
  template <typename... Args>
  void Add(const Args&... args);
};

// One client: a session and (unless asked otherwise) an RDMA connection attached to it, with a
// registered local buffer of kBufferBytes.
struct Peer {
  static constexpr size_t kBufferBytes = 256 * 1024;
  std::string name;
  std::unique_ptr<client::Client> client;
  std::unique_ptr<client::RdmaConnection> rdma;
  client::LocalBuffer buffer;
};

class Fixture {
 public:
  Fixture(const VmEnv& env, const Filesystem& fs, std::string scenario);
  ~Fixture();
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  // Starts the broker (exports every mounted filesystem, each in a fresh directory, with the
  // revoke `grace` and the default `policy` that out-of-band changes get).
  absl::Status Start(absl::Duration grace = absl::Seconds(2),
                     v1::LayoutPolicy policy = v1::LAYOUT_POLICY_REVOKE);
  // Stops it: SIGTERM, exit status 0 required. Removes the work directories.
  absl::Status Stop();

  const VmEnv& env() const { return env_; }
  const Filesystem& fs() const { return fs_; }
  BrokerProcess& broker() { return *broker_; }
  bool broker_started() const { return broker_ != nullptr; }
  const std::string& export_name() const { return fs_.export_name; }
  v1::LayoutPolicy policy() const { return policy_; }  // The exports' default, from Start().
  std::string Path(absl::string_view name) const;      // The file's path in the export.

  // A file of `size` bytes holding Pattern(seed, ...), synced.
  absl::Status CreateFile(absl::string_view name, uint64_t size, uint64_t seed);
  absl::StatusOr<std::string> ReadFile(absl::string_view name, uint64_t offset, uint64_t length);
  absl::StatusOr<uint64_t> FileSize(absl::string_view name);
  // pwrite of `data` at `offset` (the file's own write path, not RDMA), synced.
  absl::Status WriteFile(absl::string_view name, uint64_t offset, absl::string_view data);
  // pread of [offset, offset + expected.size()) must equal `expected`; the error says where the
  // first difference is and names `what`.
  absl::Status ExpectFileBytes(absl::string_view name, uint64_t offset, absl::string_view expected,
                               absl::string_view what);
  // The whole file must be `expected`: its size, then every byte.
  absl::Status ExpectFileIs(absl::string_view name, absl::string_view expected,
                            absl::string_view what);

  // A client named `name`; with `rdma`, attached from the client-side address.
  absl::StatusOr<std::unique_ptr<Peer>> Connect(absl::string_view name, bool rdma = true);

  // Pin options for [offset, offset + length) of `name` on this filesystem's export.
  client::RdmaPinOptions PinOptions(absl::string_view name, uint64_t offset, uint64_t length,
                                    bool writable = true) const;

 private:
  const VmEnv& env_;
  const Filesystem fs_;
  const std::string scenario_;
  std::string work_dir_;
  std::vector<std::string> export_dirs_;
  std::string export_dir_;  // fs_'s.
  v1::LayoutPolicy policy_ = v1::LAYOUT_POLICY_REVOKE;
  std::unique_ptr<BrokerProcess> broker_;
};

// Deterministic bytes for file offsets [offset, offset + length) of a file written with `seed`.
std::string Pattern(uint64_t seed, uint64_t offset, uint64_t length);
// "" if equal; else where the first difference is (offsets relative to `base`) and how many
// bytes differ.
std::string DescribeDifference(absl::string_view actual, absl::string_view expected, uint64_t base);

// RDMA WRITE of `data` at lease-relative `offset` (split at the lease's max_transfer_size).
absl::Status RdmaWrite(client::RdmaLease& lease, Peer& peer, uint64_t offset,
                       absl::string_view data, const client::RdmaOpOptions& options = {});
// RDMA READ of `length` bytes at lease-relative `offset`.
absl::StatusOr<std::string> RdmaRead(client::RdmaLease& lease, Peer& peer, uint64_t offset,
                                     uint64_t length);

// What a lease's callbacks saw (RdmaPinOptions::on_recall / on_revoked), for the scenario's
// thread to wait on.
class LeaseEvents {
 public:
  // Points `pin`'s callbacks at this object (which must outlive the lease).
  void Hook(client::RdmaPinOptions& pin);
  void Hook(client::PinOptions& pin);
  // True once the recall (revocation) callback has run; false after `timeout`.
  bool WaitRecalled(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  bool WaitRevoked(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  bool recalled() const ABSL_LOCKS_EXCLUDED(mu_);
  bool revoked() const ABSL_LOCKS_EXCLUDED(mu_);
  absl::Time recalled_at() const ABSL_LOCKS_EXCLUDED(mu_);
  std::string recall_reason() const ABSL_LOCKS_EXCLUDED(mu_);
  absl::Time recall_deadline() const ABSL_LOCKS_EXCLUDED(mu_);
  std::string revoke_reason() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  bool recalled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time recalled_at_ ABSL_GUARDED_BY(mu_);
  std::string recall_reason_ ABSL_GUARDED_BY(mu_);
  absl::Time recall_deadline_ ABSL_GUARDED_BY(mu_);
  void OnRecall(absl::string_view reason, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  void OnRevoked(absl::string_view reason) ABSL_LOCKS_EXCLUDED(mu_);

  bool revoked_ ABSL_GUARDED_BY(mu_) = false;
  std::string revoke_reason_ ABSL_GUARDED_BY(mu_);
};

// An error with `message` unless `condition` holds.
absl::Status Expect(bool condition, absl::string_view message);
// `s` with `what: ` in front of its message (OK stays OK).
absl::Status Context(const absl::Status& s, absl::string_view what);

// RDMA WRITE of `data` at lease-relative `offset`, then pread of the same file bytes.
absl::Status WriteAndCheck(Fixture& f, client::RdmaLease& lease, Peer& peer, uint64_t offset,
                           absl::string_view data, absl::string_view what);
// RDMA READ of `length` bytes at lease-relative `offset`, compared with pread of the file.
absl::Status ReadAndCheck(Fixture& f, client::RdmaLease& lease, Peer& peer, uint64_t offset,
                          uint64_t length, absl::string_view what);
// "lease 1a2b-3 pinned on rxe0, rkey 0x1234".
std::string DescribeLease(const client::RdmaLease& lease);

// Seconds with millisecond precision: "2.041 s".
std::string Secs(absl::Duration d);
// "ok" or the status's code and message.
std::string StatusText(const absl::Status& s);
// Whether `list` contains `id`.
bool Contains(const google::protobuf::RepeatedPtrField<std::string>& list, absl::string_view id);
std::string JoinIds(const google::protobuf::RepeatedPtrField<std::string>& list);

template <typename... Args>
void Notes::Add(const Args&... args) {
  std::string s;
  (s.append(absl::StrCat(args)), ...);
  items.push_back(std::move(s));
}

}  // namespace pinbroker::scenarios
