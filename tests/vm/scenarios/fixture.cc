#include "tests/vm/scenarios/fixture.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace pinbroker::scenarios {
namespace {

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

std::string Pattern(uint64_t seed, uint64_t offset, uint64_t length) {
  std::string out(length, '\0');
  for (uint64_t i = 0; i < length; ++i) {
    const uint64_t at = offset + i;
    out[i] = static_cast<char>(Mix(seed * 0x100000001b3ull + at / 8) >> (8 * (at % 8)));
  }
  return out;
}

std::string DescribeDifference(absl::string_view actual, absl::string_view expected,
                               uint64_t base) {
  if (actual == expected) return "";
  if (actual.size() != expected.size()) {
    return absl::StrCat("read ", actual.size(), " bytes, expected ", expected.size());
  }
  size_t first = 0;
  while (actual[first] == expected[first]) ++first;
  size_t count = 0;
  for (size_t i = first; i < actual.size(); ++i) count += actual[i] != expected[i];
  size_t zeros = 0;
  for (size_t i = first; i < actual.size(); ++i) zeros += actual[i] == '\0';
  return absl::StrFormat(
      "first difference at offset %d: 0x%02x instead of 0x%02x; %d of %d bytes differ (%d of "
      "the bytes from there on are zero)",
      base + first, static_cast<uint8_t>(actual[first]), static_cast<uint8_t>(expected[first]),
      count, actual.size(), zeros);
}

void LeaseEvents::Hook(client::RdmaPinOptions& pin) {
  pin.on_recall = [this](client::RdmaLease&, absl::string_view reason, absl::Time deadline) {
    OnRecall(reason, deadline);
  };
  pin.on_revoked = [this](client::RdmaLease&, absl::string_view reason) { OnRevoked(reason); };
}

void LeaseEvents::Hook(client::PinOptions& pin) {
  pin.on_recall = [this](client::Lease&, absl::string_view reason, absl::Time deadline) {
    OnRecall(reason, deadline);
  };
  pin.on_revoked = [this](client::Lease&, absl::string_view reason) { OnRevoked(reason); };
}

void LeaseEvents::OnRecall(absl::string_view reason, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  recalled_ = true;
  recalled_at_ = absl::Now();
  recall_reason_ = std::string(reason);
  recall_deadline_ = deadline;
}

void LeaseEvents::OnRevoked(absl::string_view reason) {
  absl::MutexLock lock(&mu_);
  revoked_ = true;
  revoke_reason_ = std::string(reason);
}

bool LeaseEvents::WaitRecalled(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&recalled_), timeout);
}

bool LeaseEvents::WaitRevoked(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&revoked_), timeout);
}

bool LeaseEvents::recalled() const {
  absl::MutexLock lock(&mu_);
  return recalled_;
}
bool LeaseEvents::revoked() const {
  absl::MutexLock lock(&mu_);
  return revoked_;
}
absl::Time LeaseEvents::recalled_at() const {
  absl::MutexLock lock(&mu_);
  return recalled_at_;
}
std::string LeaseEvents::recall_reason() const {
  absl::MutexLock lock(&mu_);
  return recall_reason_;
}
absl::Time LeaseEvents::recall_deadline() const {
  absl::MutexLock lock(&mu_);
  return recall_deadline_;
}
std::string LeaseEvents::revoke_reason() const {
  absl::MutexLock lock(&mu_);
  return revoke_reason_;
}

absl::Status Expect(bool condition, absl::string_view message) {
  return condition ? absl::OkStatus() : absl::FailedPreconditionError(message);
}

absl::Status Context(const absl::Status& s, absl::string_view what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", StatusText(s)));
}

absl::Status WriteAndCheck(Fixture& f, client::RdmaLease& lease, Peer& peer, uint64_t offset,
                           absl::string_view data, absl::string_view what) {
  absl::Status s = RdmaWrite(lease, peer, offset, data);
  if (!s.ok()) return Context(s, absl::StrCat(what, ": RDMA WRITE by ", peer.name));
  return f.ExpectFileBytes(lease.lease().path(), lease.lease().range().offset + offset, data,
                           absl::StrCat(what, " (after an RDMA WRITE that completed)"));
}

absl::Status ReadAndCheck(Fixture& f, client::RdmaLease& lease, Peer& peer, uint64_t offset,
                          uint64_t length, absl::string_view what) {
  auto got = RdmaRead(lease, peer, offset, length);
  if (!got.ok()) return Context(got.status(), absl::StrCat(what, ": RDMA READ by ", peer.name));
  const uint64_t file_offset = lease.lease().range().offset + offset;
  auto want = f.ReadFile(lease.lease().path(), file_offset, length);
  if (!want.ok()) return want.status();
  const std::string diff = DescribeDifference(*got, *want, file_offset);
  if (!diff.empty()) {
    return absl::DataLossError(
        absl::StrCat(what, ": RDMA READ returned other bytes than the file holds: ", diff));
  }
  return absl::OkStatus();
}

std::string DescribeLease(const client::RdmaLease& lease) {
  const v1::RdmaAccess& r = lease.rdma();
  return absl::StrFormat("lease %s %s on %s rkey 0x%x", lease.id(),
                         v1::RegistrationMode_Name(lease.lease().mode()), r.device(), r.rkey());
}

std::string Secs(absl::Duration d) { return absl::StrFormat("%.3f s", absl::ToDoubleSeconds(d)); }

std::string StatusText(const absl::Status& s) {
  if (s.ok()) return "ok";
  return absl::StrCat(absl::StatusCodeToString(s.code()), ": ", s.message());
}

bool Contains(const google::protobuf::RepeatedPtrField<std::string>& list, absl::string_view id) {
  return std::find(list.begin(), list.end(), id) != list.end();
}

std::string JoinIds(const google::protobuf::RepeatedPtrField<std::string>& list) {
  return list.empty() ? "none" : absl::StrJoin(list, ",");
}

Fixture::Fixture(const VmEnv& env, const Filesystem& fs, std::string scenario)
    : env_(env), fs_(fs), scenario_(std::move(scenario)) {}

Fixture::~Fixture() {
  broker_.reset();
  std::error_code ignored;
  for (const std::string& d : export_dirs_) std::filesystem::remove_all(d, ignored);
  if (!work_dir_.empty()) std::filesystem::remove_all(work_dir_, ignored);
}

absl::Status Fixture::Start(absl::Duration grace, v1::LayoutPolicy policy) {
  const std::string tag = absl::StrCat("pbscen-", getpid());
  work_dir_ = absl::StrCat("/tmp/", tag);
  std::error_code ec;
  std::filesystem::remove_all(work_dir_, ec);
  if (!std::filesystem::create_directories(work_dir_, ec)) {
    return absl::InternalError(absl::StrCat("mkdir ", work_dir_, ": ", ec.message()));
  }
  BrokerSettings settings;
  settings.work_dir = work_dir_;
  settings.rdma_address = env_.ip0;
  settings.grace = grace;
  settings.policy = policy;
  policy_ = policy;
  for (const Filesystem& fs : env_.filesystems) {
    struct stat st = {};
    if (stat(fs.mount.c_str(), &st) != 0) continue;  // Not mounted here: not exported.
    const std::string root = absl::StrCat(fs.mount, "/", tag);
    std::filesystem::remove_all(root, ec);
    export_dirs_.push_back(root);
    settings.exports.emplace_back(fs.export_name, root);
    if (fs.name == fs_.name) export_dir_ = root;
  }
  if (export_dir_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(fs_.mount, " does not exist"));
  }
  auto broker = BrokerProcess::Start(env_, settings);
  if (!broker.ok()) return broker.status();
  broker_ = *std::move(broker);
  return absl::OkStatus();
}

absl::Status Fixture::Stop() {
  if (broker_ == nullptr) return absl::OkStatus();
  absl::Status s = broker_->Stop();
  return s;
}

std::string Fixture::Path(absl::string_view name) const {
  return absl::StrCat(export_dir_, "/", name);
}

absl::Status Fixture::CreateFile(absl::string_view name, uint64_t size, uint64_t seed) {
  const std::string path = Path(name);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno(absl::StrCat("create ", path));
  const std::string data = Pattern(seed, 0, size);
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = pwrite(fd, data.data() + done, data.size() - done, done);
    if (n <= 0) {
      const absl::Status s = Errno(absl::StrCat("pwrite ", path));
      close(fd);
      return s;
    }
    done += n;
  }
  if (fsync(fd) != 0) {
    const absl::Status s = Errno(absl::StrCat("fsync ", path));
    close(fd);
    return s;
  }
  close(fd);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Fixture::ReadFile(absl::string_view name, uint64_t offset,
                                              uint64_t length) {
  const std::string path = Path(name);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("open ", path));
  std::string out(length, '\0');
  size_t done = 0;
  while (done < length) {
    const ssize_t n = pread(fd, out.data() + done, length - done, offset + done);
    if (n < 0) {
      const absl::Status s = Errno(absl::StrCat("pread ", path));
      close(fd);
      return s;
    }
    if (n == 0) break;  // EOF: the comparison reports the short read.
    done += n;
  }
  close(fd);
  out.resize(done);
  return out;
}

absl::Status Fixture::WriteFile(absl::string_view name, uint64_t offset, absl::string_view data) {
  const std::string path = Path(name);
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("open ", path));
  const ssize_t n = pwrite(fd, data.data(), data.size(), offset);
  absl::Status s = n == static_cast<ssize_t>(data.size()) ? absl::OkStatus()
                                                          : Errno(absl::StrCat("pwrite ", path));
  if (s.ok() && fsync(fd) != 0) s = Errno(absl::StrCat("fsync ", path));
  close(fd);
  return s;
}

absl::StatusOr<uint64_t> Fixture::FileSize(absl::string_view name) {
  struct stat st = {};
  if (stat(Path(name).c_str(), &st) != 0) return Errno(absl::StrCat("stat ", Path(name)));
  return static_cast<uint64_t>(st.st_size);
}

absl::Status Fixture::ExpectFileBytes(absl::string_view name, uint64_t offset,
                                      absl::string_view expected, absl::string_view what) {
  auto actual = ReadFile(name, offset, expected.size());
  if (!actual.ok()) return actual.status();
  const std::string diff = DescribeDifference(*actual, expected, offset);
  if (!diff.empty()) {
    return absl::DataLossError(absl::StrCat(what, ": file bytes [", offset, ", ",
                                            offset + expected.size(), ") of ", name,
                                            " are wrong: ", diff));
  }
  return absl::OkStatus();
}

absl::Status Fixture::ExpectFileIs(absl::string_view name, absl::string_view expected,
                                   absl::string_view what) {
  auto size = FileSize(name);
  if (!size.ok()) return size.status();
  if (*size != expected.size()) {
    return absl::DataLossError(
        absl::StrCat(what, ": ", name, " has ", *size, " bytes, expected ", expected.size()));
  }
  return ExpectFileBytes(name, 0, expected, what);
}

absl::StatusOr<std::unique_ptr<Peer>> Fixture::Connect(absl::string_view name, bool rdma) {
  auto peer = std::make_unique<Peer>();
  peer->name = std::string(name);
  client::ClientOptions options;
  options.client_name = std::string(name);
  auto c = client::Client::Connect(broker_->endpoint(), options);
  if (!c.ok()) {
    return absl::Status(c.status().code(),
                        absl::StrCat("client ", name, ": Connect: ", c.status().message()));
  }
  peer->client = *std::move(c);
  if (!rdma) return peer;
  client::RdmaConnectOptions r;
  r.source_address = env_.ip1;
  r.op_timeout = absl::Seconds(20);
  auto conn = client::RdmaConnection::Connect(*peer->client, r);
  if (!conn.ok()) {
    return absl::Status(conn.status().code(),
                        absl::StrCat("client ", name, ": RDMA connect: ", conn.status().message()));
  }
  peer->rdma = *std::move(conn);
  auto buffer = peer->rdma->AllocateBuffer(Peer::kBufferBytes);
  if (!buffer.ok()) {
    return absl::Status(buffer.status().code(),
                        absl::StrCat("client ", name, ": buffer: ", buffer.status().message()));
  }
  peer->buffer = *buffer;
  return peer;
}

client::RdmaPinOptions Fixture::PinOptions(absl::string_view name, uint64_t offset, uint64_t length,
                                           bool writable) const {
  client::RdmaPinOptions pin;
  pin.export_name = fs_.export_name;
  pin.path = std::string(name);
  pin.offset = offset;
  pin.length = length;
  pin.access = writable ? v1::ACCESS_READ_WRITE : v1::ACCESS_READ;
  pin.ttl = absl::Seconds(120);
  return pin;
}

absl::Status RdmaWrite(client::RdmaLease& lease, Peer& peer, uint64_t offset,
                       absl::string_view data, const client::RdmaOpOptions& options) {
  if (data.size() > peer.buffer.size()) {
    return absl::InvalidArgumentError("write larger than the peer's buffer");
  }
  std::memcpy(peer.buffer.data(), data.data(), data.size());
  const uint64_t chunk_limit =
      lease.rdma().max_transfer_size() > 0 ? lease.rdma().max_transfer_size() : data.size();
  for (uint64_t done = 0; done < data.size();) {
    const uint64_t n = std::min<uint64_t>(chunk_limit, data.size() - done);
    absl::Status s = lease.Write(offset + done, peer.buffer, done, n, options);
    if (!s.ok()) return s;
    done += n;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RdmaRead(client::RdmaLease& lease, Peer& peer, uint64_t offset,
                                     uint64_t length) {
  if (length > peer.buffer.size()) {
    return absl::InvalidArgumentError("read larger than the peer's buffer");
  }
  std::memset(peer.buffer.data(), 0xee, length);
  const uint64_t chunk_limit =
      lease.rdma().max_transfer_size() > 0 ? lease.rdma().max_transfer_size() : length;
  for (uint64_t done = 0; done < length;) {
    const uint64_t n = std::min<uint64_t>(chunk_limit, length - done);
    absl::Status s = lease.Read(offset + done, peer.buffer, done, n);
    if (!s.ok()) return s;
    done += n;
  }
  return std::string(reinterpret_cast<const char*>(peer.buffer.data()), length);
}

}  // namespace pinbroker::scenarios
