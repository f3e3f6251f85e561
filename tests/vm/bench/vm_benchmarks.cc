// vm_benchmarks (one program, over 500 lines on purpose: each measurement sits beside its plain
// verbs baseline, so that both are read together): what a pinbroker lease costs over plain
// verbs, measured in the qemu guest of
// tests/vm (rxe0 10.77.0.1 for the broker, rxe1 10.77.0.2 for the client; see tests/vm/README.md
// for the environment). It starts its own pinbrokerd (RDMA backend on rxe0, export on tmpfs) and
// measures, on a 64 MiB tmpfs file that is already registered (a lease over the whole file is
// held throughout):
//
//   grant    Pin RPC with rdma (window bind and, where the broker needs one, a registration)
//            vs ibv_reg_mr of the same range on rxe0, at 4 KiB, 1 MiB and 64 MiB;
//   revoke   Release RPC of that lease (window invalidation; the broker's own invalidation time
//            is read from its log) vs ibv_dereg_mr;
//   write    RDMA WRITE throughput rxe1 -> rxe0 through a lease vs into a plain region
//            registered on rxe0 (by a listener in this process), both over the same client
//            connection code (clients/rdma), 4 MiB in 256 KiB writes, 4 in flight, three
//            times each (alternating); the bytes are checked in the file after every run.
//
// Every measurement runs twice (rounds 1 and 2) in one run; it prints medians and ratios as
// "BENCH ..." lines and one "SCENARIO bench-...: PASS|FAIL ..." line per family. Exit status 0
// iff every family was measured. Runtime in the TCG guest: well under a minute.
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <infiniband/verbs.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "clients/rdma/connection_core.h"
#include "common/log.h"
#include "pinbroker/client.h"
#include "pinbroker/rdma_connection.h"
#include "pinbroker/rdma_lease.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"
#include "tests/vm/bench/broker_launch.h"
#include "tests/vm/bench/plain_target.h"
#include "tests/vm/bench/write_pipeline.h"

namespace pinbroker::vmbench {
namespace {

namespace client = ::pinbroker::client;
namespace ri = ::pinbroker::client::rdma_internal;

constexpr uint64_t kFileBytes = uint64_t{64} << 20;
constexpr uint64_t kWriteBytes = uint64_t{4} << 20;
constexpr int kWriteReps = 3;  // Per round, alternating lease and plain.
constexpr uint64_t kChunk = uint64_t{256} << 10;
constexpr uint32_t kDepth = 4;
constexpr uint16_t kPlainPort = 7480;
constexpr int kRounds = 2;
// The plain region's access: what a server would give a client to write into.
constexpr int kPlainAccess =
    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string SizeName(uint64_t size) {
  if (size >= (1u << 20)) return absl::StrCat(size >> 20, "M");
  return absl::StrCat(size >> 10, "K");
}

uint8_t PatternByte(uint64_t seed, uint64_t offset) {
  return static_cast<uint8_t>((offset * 131 + (offset >> 12) * 7 + seed * 29) & 0xff);
}

void Fill(uint8_t* out, uint64_t offset, uint64_t n, uint64_t seed) {
  for (uint64_t i = 0; i < n; ++i) out[i] = PatternByte(seed, offset + i);
}

// Checks that the file's mapped bytes [0, n) hold the pattern of `seed`.
absl::Status CheckFile(const uint8_t* map, uint64_t n, uint64_t seed, absl::string_view what) {
  for (uint64_t i = 0; i < n; ++i) {
    if (map[i] != PatternByte(seed, i)) {
      return absl::DataLossError(absl::StrFormat("%s: file byte %d is 0x%02x, wrote 0x%02x", what,
                                                 i, map[i], PatternByte(seed, i)));
    }
  }
  return absl::OkStatus();
}

// The broker's own time to take a lease's access away, from its log line
// "rdma: lease <seq>: access taken away (release) in <ms> ms"; NaN if absent.
double BrokerInvalidationMs(const std::string& log, const std::string& lease_id) {
  const std::string seq = lease_id.substr(lease_id.rfind('-') + 1);
  const std::string key = absl::StrCat("lease ", seq, ": access taken away (release) in ");
  const size_t at = log.find(key);
  if (at == std::string::npos) return NAN;
  const size_t start = at + key.size();
  const size_t end = log.find(' ', start);
  double ms = NAN;
  if (!absl::SimpleAtod(log.substr(start, end - start), &ms)) return NAN;
  return ms;
}

// The broker's own time to register and bind a lease's window, from its log lines
// "lease <seq>: registered ... in <ms> ms" and "lease <seq>: ... window bound in <ms> ms" (the
// sum of those present); NaN if neither is there.
double BrokerGrantMs(const std::string& log, const std::string& lease_id) {
  const std::string prefix =
      absl::StrCat(" lease ", lease_id.substr(lease_id.rfind('-') + 1), ": ");
  double total = NAN;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::StrContains(line, prefix)) continue;
    size_t at = absl::string_view::npos;
    if (absl::StrContains(line, ": registered ")) {
      at = line.rfind(" in ");
      if (at != absl::string_view::npos) at += 4;
    } else if (const size_t b = line.find("window bound in "); b != absl::string_view::npos) {
      at = b + 16;
    }
    if (at == absl::string_view::npos) continue;
    double ms = NAN;
    const absl::string_view rest = line.substr(at);
    if (absl::SimpleAtod(rest.substr(0, rest.find(' ')), &ms)) {
      total = std::isnan(total) ? ms : total + ms;
    }
  }
  return total;
}

struct Grant {
  uint64_t size = 0;
  int reps = 0;
  double pin_ms = NAN, reg_ms = NAN, release_ms = NAN, dereg_ms = NAN, broker_ms = NAN;
  double broker_grant_ms = NAN;
};

struct Round {
  double echo_ms = NAN;  // One Echo RPC: the gRPC floor under every Pin and Release.
  std::vector<Grant> grants;
  double lease_mib_s = NAN, plain_mib_s = NAN;
};

class Bench {
 public:
  absl::Status Setup() {
    const std::string tmpfs = Env("PB_TMPFS", "/mnt/tmpfs");
    ip0_ = Env("PB_IP0", "10.77.0.1");
    ip1_ = Env("PB_IP1", "10.77.0.2");
    const std::string root = tmpfs + "/pb-bench";
    const std::string work = "/tmp/pb-bench";
    mkdir(root.c_str(), 0755);
    mkdir(work.c_str(), 0755);
    const std::string path = root + "/bench.bin";
    fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", strerror(errno)));
    if (ftruncate(fd_, kFileBytes) != 0) return absl::InternalError("ftruncate");
    void* map = mmap(nullptr, kFileBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (map == MAP_FAILED) return absl::InternalError(absl::StrCat("mmap: ", strerror(errno)));
    map_ = static_cast<uint8_t*>(map);
    std::memset(map_, 0x5a, kFileBytes);  // Every page exists before anything registers it.

    BrokerArgs args;
    args.binary = Env("PB_BIN", "/pb/bin") + "/pinbrokerd";
    args.work_dir = work;
    args.export_name = "bench";
    args.export_root = root;
    args.rdma_address = ip0_;
    auto broker = BrokerLaunch::Start(args);
    if (!broker.ok()) return broker.status();
    broker_ = *std::move(broker);

    client::ClientOptions options;
    options.client_name = "vm_benchmarks";
    auto c = client::Client::Connect(broker_->endpoint(), options);
    if (!c.ok()) return c.status();
    client_ = *std::move(c);
    client::RdmaConnectOptions rdma;
    rdma.address = ip0_;
    rdma.source_address = ip1_;
    auto conn = client::RdmaConnection::Connect(*client_, rdma);
    if (!conn.ok()) return conn.status();
    connection_ = *std::move(conn);

    auto target = PlainTarget::Listen(ip0_, kPlainPort);
    if (!target.ok()) return target.status();
    target_ = *std::move(target);
    ri::ConnectTarget to;
    to.address = ip0_;
    to.port = target_->port();
    to.source_address = ip1_;
    auto plain = ri::ConnectionCore::Connect(to, rdma_wire::AttachRequest(), ri::CoreOptions());
    if (!plain.ok()) return plain.status();
    plain_ = *std::move(plain);
    plain_mr_ = ibv_reg_mr(target_->pd(), map_, kWriteBytes, kPlainAccess);
    if (plain_mr_ == nullptr) {
      return absl::InternalError(absl::StrCat("ibv_reg_mr of the plain region: ", strerror(errno)));
    }
    for (uint32_t i = 0; i < kDepth; ++i) {
      auto lb = connection_->AllocateBuffer(kChunk);
      if (!lb.ok()) return lb.status();
      lease_buffers_.push_back(*lb);
      auto pb = ri::BufferImpl::Create(plain_, kChunk);
      if (!pb.ok()) return pb.status();
      plain_buffers_.push_back(*pb);
    }

    // The warm lease: the file is registered before (and while) the grants are measured.
    auto warm = client::RdmaLease::Pin(*client_, *connection_, PinOptions(0, kFileBytes));
    if (!warm.ok()) return warm.status();
    warm_ = *std::move(warm);
    auto info = client_->GetInfo();
    auto described = client_->DescribeFile("bench", "bench.bin");
    std::printf(
        "BENCH setup kernel=%s broker_device=%s client_device=%s path_mtu=%u "
        "plain_device=%s warm_lease_mode=%s registrations=%d\n",
        Env("PB_KERNEL", "?").c_str(), warm_->rdma().device().c_str(),
        connection_->device().c_str(), connection_->path_mtu(), target_->device().c_str(),
        v1::RegistrationMode_Name(warm_->lease().mode()).c_str(),
        described.ok() ? described->registrations_size() : -1);
    if (info.ok()) {
      for (const v1::DeviceInfo& d : info->devices()) {
        for (const std::string& q : d.quirks())
          std::printf("BENCH quirk %s: %s\n", d.name().c_str(), q.c_str());
      }
    }
    std::fflush(stdout);
    return absl::OkStatus();
  }

  ~Bench() {
    warm_.reset();
    if (plain_mr_ != nullptr) ibv_dereg_mr(plain_mr_);
    plain_buffers_.clear();
    if (plain_) plain_->Close(absl::Seconds(5)).IgnoreError();
    plain_.reset();
    target_.reset();
    lease_buffers_.clear();
    connection_.reset();
    client_.reset();
    broker_.reset();
    if (map_ != nullptr) munmap(map_, kFileBytes);
    if (fd_ >= 0) close(fd_);
  }

  absl::StatusOr<Grant> MeasureGrant(uint64_t size, int reps) {
    Grant g;
    g.size = size;
    g.reps = reps;
    std::vector<double> pin, release, broker, broker_grant, reg, dereg;
    for (int i = 0; i < reps; ++i) {
      client::PinOptions p;
      p.export_name = "bench";
      p.path = "bench.bin";
      p.length = size;
      p.access = v1::ACCESS_READ_WRITE;
      p.rdma = true;
      const size_t pin_log_at = broker_->LogSize();
      const absl::Time t0 = absl::Now();
      auto lease = client_->Pin(p);
      const absl::Time t1 = absl::Now();
      if (!lease.ok()) return lease.status();
      if (!(*lease)->info().has_rdma()) {
        return absl::FailedPreconditionError("the broker granted no RDMA access");
      }
      const double bg = BrokerGrantMs(broker_->LogFrom(pin_log_at), (*lease)->id());
      if (!std::isnan(bg)) broker_grant.push_back(bg);
      const size_t log_at = broker_->LogSize();
      const absl::Time t2 = absl::Now();
      if (absl::Status s = (*lease)->Release(); !s.ok()) return s;
      const absl::Time t3 = absl::Now();
      pin.push_back(Ms(t1 - t0));
      release.push_back(Ms(t3 - t2));
      const double b = BrokerInvalidationMs(broker_->LogFrom(log_at), (*lease)->id());
      if (!std::isnan(b)) broker.push_back(b);

      const absl::Time t4 = absl::Now();
      ibv_mr* mr = ibv_reg_mr(target_->pd(), map_, size, kPlainAccess);
      const absl::Time t5 = absl::Now();
      if (mr == nullptr) return absl::InternalError(absl::StrCat("ibv_reg_mr: ", strerror(errno)));
      if (int rc = ibv_dereg_mr(mr); rc != 0) {
        return absl::InternalError(absl::StrCat("ibv_dereg_mr: ", strerror(rc)));
      }
      const absl::Time t6 = absl::Now();
      reg.push_back(Ms(t5 - t4));
      dereg.push_back(Ms(t6 - t5));
    }
    g.pin_ms = Median(pin);
    g.release_ms = Median(release);
    g.broker_ms = Median(broker);
    g.broker_grant_ms = Median(broker_grant);
    g.reg_ms = Median(reg);
    g.dereg_ms = Median(dereg);
    return g;
  }

  absl::StatusOr<double> EchoMs(int reps) {
    if (echo_ == nullptr) {
      echo_ = v1::PinBroker::NewStub(
          grpc::CreateChannel(broker_->endpoint(), grpc::InsecureChannelCredentials()));
    }
    std::vector<double> ms;
    for (int i = 0; i <= reps; ++i) {  // The first call connects: not counted.
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
      v1::EchoRequest request;
      request.set_payload("x");
      v1::EchoResponse response;
      const absl::Time t0 = absl::Now();
      const grpc::Status status = echo_->Echo(&context, request, &response);
      const absl::Time t1 = absl::Now();
      if (!status.ok()) return absl::UnavailableError(status.error_message());
      if (i > 0) ms.push_back(Ms(t1 - t0));
    }
    return Median(ms);
  }

  absl::StatusOr<double> LeaseWrite(uint64_t seed) {
    auto lease = client::RdmaLease::Pin(*client_, *connection_, PinOptions(0, kWriteBytes));
    if (!lease.ok()) return lease.status();
    client::RdmaLease& l = **lease;
    auto took =
        RunWrites(kWriteBytes, kChunk, kDepth, [&](uint64_t offset, size_t slot, uint64_t n) {
          Fill(lease_buffers_[slot].data(), offset, n, seed);
          return l.StartWrite(offset, lease_buffers_[slot], 0, n);
        });
    if (!took.ok()) return took.status();
    if (absl::Status s = l.Release(); !s.ok()) return s;
    if (absl::Status s = CheckFile(map_, kWriteBytes, seed, "lease write"); !s.ok()) return s;
    return kWriteBytes / (1024.0 * 1024.0) / absl::ToDoubleSeconds(*took);
  }

  absl::StatusOr<double> PlainWrite(uint64_t seed) {
    struct Waiter {
      std::shared_ptr<ri::OpRecord> record;
      absl::Status Wait() const {
        if (!record->AwaitDone(absl::Now() + absl::Seconds(60))) {
          return absl::DeadlineExceededError("plain WRITE did not complete in 60s");
        }
        return record->status();
      }
    };
    auto took = RunWrites(kWriteBytes, kChunk, kDepth,
                          [&](uint64_t offset, size_t slot, uint64_t n) -> absl::StatusOr<Waiter> {
                            Fill(plain_buffers_[slot]->data(), offset, n, seed);
                            ri::OpSpec spec;
                            spec.kind = client::RdmaOpKind::kWrite;
                            spec.lease_id = "plain-region";
                            spec.remote_address = reinterpret_cast<uintptr_t>(map_) + offset;
                            spec.rkey = plain_mr_->rkey;
                            spec.buffer = plain_buffers_[slot];
                            spec.length = n;
                            auto record = plain_->Post(std::move(spec));
                            if (!record.ok()) return record.status();
                            return Waiter{*std::move(record)};
                          });
    if (!took.ok()) return took.status();
    if (absl::Status s = CheckFile(map_, kWriteBytes, seed, "plain write"); !s.ok()) return s;
    return kWriteBytes / (1024.0 * 1024.0) / absl::ToDoubleSeconds(*took);
  }

 private:
  static client::RdmaPinOptions PinOptions(uint64_t offset, uint64_t length) {
    client::RdmaPinOptions p;
    p.export_name = "bench";
    p.path = "bench.bin";
    p.offset = offset;
    p.length = length;
    p.access = v1::ACCESS_READ_WRITE;
    return p;
  }

  std::string ip0_, ip1_;
  int fd_ = -1;
  uint8_t* map_ = nullptr;
  std::unique_ptr<BrokerLaunch> broker_;
  std::unique_ptr<v1::PinBroker::Stub> echo_;
  std::unique_ptr<client::Client> client_;
  std::unique_ptr<client::RdmaConnection> connection_;
  std::unique_ptr<client::RdmaLease> warm_;
  std::unique_ptr<PlainTarget> target_;
  std::shared_ptr<ri::ConnectionCore> plain_;
  ibv_mr* plain_mr_ = nullptr;
  std::vector<client::LocalBuffer> lease_buffers_;
  std::vector<std::shared_ptr<ri::BufferImpl>> plain_buffers_;
};

std::string Num(double v, const char* unit = "") {
  if (std::isnan(v)) return "n/a";
  return absl::StrFormat("%.3f%s", v, unit);
}
std::string Ratio(double a, double b) {
  if (std::isnan(a) || std::isnan(b) || b <= 0) return "n/a";
  return absl::StrFormat("x%.2f", a / b);
}

int Main() {
  const absl::Time start = absl::Now();
  SetMinLogSeverity(LogSeverity::kWarning);
  Bench bench;
  if (absl::Status s = bench.Setup(); !s.ok()) {
    std::printf("SCENARIO bench-setup: FAIL %s\n", std::string(s.message()).c_str());
    return 1;
  }
  const std::vector<std::pair<uint64_t, int>> sizes = {
      {4096, 7}, {uint64_t{1} << 20, 5}, {kFileBytes, 3}};
  std::vector<Round> rounds(kRounds);
  std::map<std::string, std::string> failed;
  for (int r = 0; r < kRounds; ++r) {
    if (auto echo = bench.EchoMs(7); echo.ok()) {
      rounds[r].echo_ms = *echo;
      std::printf("BENCH rpc round=%d echo_ms=%s\n", r + 1, Num(*echo).c_str());
    }
    for (const auto& [size, reps] : sizes) {
      auto g = bench.MeasureGrant(size, reps);
      if (!g.ok()) {
        failed["grant"] = failed["revoke"] = std::string(g.status().message());
        continue;
      }
      rounds[r].grants.push_back(*g);
      std::printf(
          "BENCH grant round=%d size=%s reps=%d pin_ms=%s broker_register_and_bind_ms=%s "
          "ibv_reg_mr_ms=%s ratio=%s broker_ratio=%s\n",
          r + 1, SizeName(size).c_str(), reps, Num(g->pin_ms).c_str(),
          Num(g->broker_grant_ms).c_str(), Num(g->reg_ms).c_str(),
          Ratio(g->pin_ms, g->reg_ms).c_str(), Ratio(g->broker_grant_ms, g->reg_ms).c_str());
      std::printf(
          "BENCH revoke round=%d size=%s reps=%d release_ms=%s broker_invalidation_ms=%s "
          "ibv_dereg_mr_ms=%s ratio=%s broker_ratio=%s\n",
          r + 1, SizeName(size).c_str(), reps, Num(g->release_ms).c_str(),
          Num(g->broker_ms).c_str(), Num(g->dereg_ms).c_str(),
          Ratio(g->release_ms, g->dereg_ms).c_str(), Ratio(g->broker_ms, g->dereg_ms).c_str());
      std::fflush(stdout);
    }
    std::vector<double> lease_mib_s, plain_mib_s;
    for (int k = 0; k < kWriteReps; ++k) {
      auto lease = bench.LeaseWrite(2 * (r * kWriteReps + k) + 1);
      auto plain = bench.PlainWrite(2 * (r * kWriteReps + k) + 2);
      if (!lease.ok()) failed["write"] = std::string(lease.status().message());
      if (!plain.ok()) failed["write"] = std::string(plain.status().message());
      if (!lease.ok() || !plain.ok()) break;
      lease_mib_s.push_back(*lease);
      plain_mib_s.push_back(*plain);
    }
    rounds[r].lease_mib_s = Median(lease_mib_s);
    rounds[r].plain_mib_s = Median(plain_mib_s);
    std::printf(
        "BENCH write round=%d bytes=%llu reps=%d chunk=%llu depth=%u lease_mib_s=%s "
        "plain_mib_s=%s ratio=%s\n",
        r + 1, static_cast<unsigned long long>(kWriteBytes), kWriteReps,
        static_cast<unsigned long long>(kChunk), kDepth, Num(rounds[r].lease_mib_s).c_str(),
        Num(rounds[r].plain_mib_s).c_str(),
        Ratio(rounds[r].lease_mib_s, rounds[r].plain_mib_s).c_str());
    std::fflush(stdout);
  }

  // One line per family: both rounds' medians and ratios.
  auto family = [&](const char* name, auto describe) {
    if (failed.count(name) != 0) {
      std::printf("SCENARIO bench-%s: FAIL %s\n", name, failed[name].c_str());
      return;
    }
    std::printf("SCENARIO bench-%s: PASS %s\n", name, describe().c_str());
  };
  family("grant", [&] {
    std::vector<std::string> parts;
    for (size_t i = 0; i < sizes.size(); ++i) {
      std::vector<std::string> rs;
      for (const Round& r : rounds) {
        if (i >= r.grants.size()) continue;
        const Grant& g = r.grants[i];
        rs.push_back(absl::StrCat(Num(g.pin_ms), " (broker ", Num(g.broker_grant_ms), ") vs ",
                                  Num(g.reg_ms), " ms (", Ratio(g.pin_ms, g.reg_ms), ")"));
      }
      parts.push_back(
          absl::StrCat(SizeName(sizes[i].first), " pin vs ibv_reg_mr ", absl::StrJoin(rs, " / ")));
    }
    return absl::StrCat(absl::StrJoin(parts, "; "), "; Echo RPC ", Num(rounds[0].echo_ms), " / ",
                        Num(rounds[kRounds - 1].echo_ms), " ms");
  });
  family("revoke", [&] {
    std::vector<std::string> parts;
    for (size_t i = 0; i < sizes.size(); ++i) {
      std::vector<std::string> rs;
      for (const Round& r : rounds) {
        if (i >= r.grants.size()) continue;
        const Grant& g = r.grants[i];
        rs.push_back(absl::StrCat(Num(g.release_ms), " (broker ", Num(g.broker_ms), ") vs ",
                                  Num(g.dereg_ms), " ms (", Ratio(g.release_ms, g.dereg_ms), ")"));
      }
      parts.push_back(absl::StrCat(SizeName(sizes[i].first), " release vs ibv_dereg_mr ",
                                   absl::StrJoin(rs, " / ")));
    }
    return absl::StrJoin(parts, "; ");
  });
  family("write", [&] {
    std::vector<std::string> rs;
    for (const Round& r : rounds) {
      rs.push_back(absl::StrCat(Num(r.lease_mib_s), " vs ", Num(r.plain_mib_s), " MiB/s (",
                                Ratio(r.lease_mib_s, r.plain_mib_s), ")"));
    }
    return absl::StrCat("lease vs plain region ", absl::StrJoin(rs, " / "));
  });
  std::printf("BENCH total_seconds=%.1f\n", absl::ToDoubleSeconds(absl::Now() - start));
  std::fflush(stdout);
  return failed.empty() ? 0 : 1;
}

}  // namespace
}  // namespace pinbroker::vmbench

int main() { return pinbroker::vmbench::Main(); }
