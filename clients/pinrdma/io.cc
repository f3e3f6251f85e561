// pinrdma write and read.
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/pinrdma/commands.h"
#include "clients/pinrdma/pattern.h"
#include "clients/pinrdma/session.h"
#include "clients/pinrdma/transfer.h"

namespace pinrdma {

namespace client = ::pinbroker::client;

IoRange SelectRange(const Options& options, const client::RdmaLease& lease) {
  IoRange r;
  r.offset = options.lease_offset;
  if (options.io_length != 0) {
    r.length = options.io_length;
  } else {
    r.length = options.lease_offset < lease.length() ? lease.length() - options.lease_offset : 0;
  }
  return r;
}

int WritePattern(const Options& options, Printer& out, client::RdmaLease& lease,
                 client::RdmaConnection& connection, IoRange range, const char* event) {
  const uint64_t file_base = lease.lease().range().offset;
  const uint64_t chunk = ChooseChunk(lease.limits(), options.chunk, range.length);
  auto stats = Transfer(
      lease, connection, client::RdmaOpKind::kWrite, range.offset, range.length, chunk,
      options.depth,
      [&](uint64_t at, uint8_t* data, size_t n) {
        FillPattern(options.pattern, file_base + at, data, n);
      },
      nullptr);
  if (!stats.ok()) return out.Error(event, stats.status());
  out.Emit(event, Fields()
                      .Str("lease_id", lease.id())
                      .Num("lease_offset", range.offset)
                      .Num("bytes", stats->bytes)
                      .Num("operations", stats->operations)
                      .Num("chunk", chunk)
                      .Num("pattern", options.pattern)
                      .Real("seconds", absl::ToDoubleSeconds(stats->elapsed))
                      .Real("mib_per_s", stats->MiBPerSecond()));
  return kExitOk;
}

int RunWrite(const Options& options, Printer& out) {
  Session session;
  if (int exit = OpenSession(options, out, /*rdma=*/true, &session); exit != kExitOk) return exit;
  std::unique_ptr<client::RdmaLease> lease;
  if (int exit = PinLease(options, out, session, {}, &lease); exit != kExitOk) return exit;
  const int exit =
      WritePattern(options, out, *lease, *session.connection, SelectRange(options, *lease));
  if (exit != kExitOk) return exit;
  if (absl::Status s = lease->Release(); !s.ok()) return out.Error("release", s);
  out.Emit("released", Fields().Str("lease_id", lease->id()));
  return kExitOk;
}

int RunRead(const Options& options, Printer& out) {
  Session session;
  if (int exit = OpenSession(options, out, /*rdma=*/true, &session); exit != kExitOk) return exit;
  std::unique_ptr<client::RdmaLease> lease;
  if (int exit = PinLease(options, out, session, {}, &lease); exit != kExitOk) return exit;
  const IoRange range = SelectRange(options, *lease);
  const uint64_t file_base = lease->lease().range().offset;
  const uint64_t chunk = ChooseChunk(lease->limits(), options.chunk, range.length);
  uint64_t checksum = kFnvBasis;
  uint64_t next = range.offset;  // Chunks complete in order.
  auto stats = Transfer(
      *lease, *session.connection, client::RdmaOpKind::kRead, range.offset, range.length, chunk,
      options.depth, nullptr, [&](uint64_t at, const uint8_t* data, size_t n) -> absl::Status {
        if (at != next) return absl::InternalError("chunks completed out of order");
        next += n;
        checksum = Fnv1a64(data, n, checksum);
        if (!options.pattern_given) return absl::OkStatus();
        const Mismatch m = CompareWithPattern(options.pattern, file_base + at, data, n);
        if (m.count == 0) return absl::OkStatus();
        return absl::DataLossError(absl::StrFormat(
            "lease %s: the byte at file offset %d is 0x%02x, the pattern (seed %d) has 0x%02x; "
            "%d of the %d bytes of that chunk differ",
            lease->id(), file_base + at + m.first, data[m.first], options.pattern,
            PatternByte(options.pattern, file_base + at + m.first), m.count, n));
      });
  if (!stats.ok()) return out.Error("read", stats.status());
  Fields f;
  f.Str("lease_id", lease->id())
      .Num("lease_offset", range.offset)
      .Num("bytes", stats->bytes)
      .Num("operations", stats->operations)
      .Num("chunk", chunk)
      .Str("fnv1a64", absl::StrFormat("%016x", checksum))
      .Real("seconds", absl::ToDoubleSeconds(stats->elapsed))
      .Real("mib_per_s", stats->MiBPerSecond());
  if (options.pattern_given) f.Bool("verified", true).Num("pattern", options.pattern);
  out.Emit("read", f);
  if (absl::Status s = lease->Release(); !s.ok()) return out.Error("release", s);
  out.Emit("released", Fields().Str("lease_id", lease->id()));
  return kExitOk;
}

}  // namespace pinrdma
