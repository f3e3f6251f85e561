// pinrdma check: the end-to-end test of a node's RDMA path through the broker.
//
//   1. connect, attach the RDMA connection, pin the range read-write with RDMA access;
//   2. read the range and keep the bytes (unless --no-restore);
//   3. write the pattern, then try FETCH_AND_ADD and COMPARE_SWAP on its first aligned word
//      (skipped, with the reason, where the lease's constraints or the device forbid atomics);
//   4. read the range back and compare every byte with the pattern (DATA_LOSS on a mismatch);
//   5. write the saved bytes back and verify them; release.
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/pinrdma/commands.h"
#include "clients/pinrdma/pattern.h"
#include "clients/pinrdma/session.h"
#include "clients/pinrdma/transfer.h"

namespace pinrdma {
namespace {

namespace client = ::pinbroker::client;

absl::Status MismatchError(const client::RdmaLease& lease, uint64_t file_offset, uint8_t got,
                           uint8_t want, uint64_t differing, uint64_t chunk_bytes,
                           absl::string_view what) {
  return absl::DataLossError(absl::StrFormat(
      "lease %s: the byte at file offset %d is 0x%02x, %s has 0x%02x; %d of the %d bytes of "
      "that chunk differ",
      lease.id(), file_offset, got, what, want, differing, chunk_bytes));
}

// FETCH_AND_ADD then COMPARE_SWAP on the pattern word at lease offset `at`, leaving the
// pattern in place. OK with `*skipped` set when the lease or device does not allow atomics.
absl::Status TryAtomics(const Options& options, client::RdmaLease& lease,
                        const client::RdmaConnection& connection, uint64_t at,
                        std::string* skipped) {
  if (absl::Status s = client::CheckLeaseOp(lease.limits(), client::RdmaOpKind::kFetchAdd, at,
                                            client::kAtomicBytes, connection.path_mtu());
      !s.ok()) {
    *skipped = std::string(s.message());
    return absl::OkStatus();
  }
  const uint64_t file_offset = lease.lease().range().offset + at;
  const uint64_t word = PatternWord(options.pattern, file_offset / 8);
  absl::StatusOr<uint64_t> before = lease.FetchAdd(at, 1);
  if (!before.ok()) {
    if (before.status().code() == absl::StatusCode::kFailedPrecondition) {
      *skipped = std::string(before.status().message());
      return absl::OkStatus();
    }
    return before.status();
  }
  if (*before != word) {
    return absl::DataLossError(absl::StrFormat(
        "lease %s: FETCH_AND_ADD at file offset %d returned 0x%016x, the pattern has 0x%016x",
        lease.id(), file_offset, *before, word));
  }
  absl::StatusOr<uint64_t> swapped = lease.CompareSwap(at, word + 1, word);
  if (!swapped.ok()) return swapped.status();
  if (*swapped != word + 1) {
    return absl::DataLossError(absl::StrFormat(
        "lease %s: COMPARE_SWAP at file offset %d found 0x%016x, expected 0x%016x (the "
        "FETCH_AND_ADD did not land)",
        lease.id(), file_offset, *swapped, word + 1));
  }
  return absl::OkStatus();
}

}  // namespace

int RunCheck(const Options& options, Printer& out) {
  Session session;
  if (int exit = OpenSession(options, out, /*rdma=*/true, &session); exit != kExitOk) return exit;
  std::unique_ptr<client::RdmaLease> lease;
  if (int exit = PinLease(options, out, session, {}, &lease); exit != kExitOk) return exit;
  client::RdmaConnection& connection = *session.connection;
  const IoRange range = SelectRange(options, *lease);
  const uint64_t file_base = lease->lease().range().offset;
  const uint64_t chunk = ChooseChunk(lease->limits(), options.chunk, range.length);

  // 2. Save.
  std::vector<uint8_t> saved;
  if (options.restore) {
    saved.resize(range.length);
    auto stats =
        Transfer(*lease, connection, client::RdmaOpKind::kRead, range.offset, range.length, chunk,
                 options.depth, nullptr, [&](uint64_t at, const uint8_t* data, size_t n) {
                   std::memcpy(saved.data() + (at - range.offset), data, n);
                   return absl::OkStatus();
                 });
    if (!stats.ok()) return out.Error("save the original bytes", stats.status());
  }

  // 3. Pattern and atomics.
  if (int exit = WritePattern(options, out, *lease, connection, range); exit != kExitOk) {
    return exit;
  }
  std::string atomics = "ok";
  if (!options.atomics) {
    atomics = "skipped: --no-atomics";
  } else {
    const uint64_t at = (range.offset + 7) / 8 * 8;
    std::string skipped;
    absl::Status s = at + 8 <= range.offset + range.length
                         ? TryAtomics(options, *lease, connection, at, &skipped)
                         : absl::OkStatus();
    if (at + 8 > range.offset + range.length) skipped = "the range holds no aligned 8 bytes";
    if (!s.ok()) return out.Error("atomics", s);
    if (!skipped.empty()) atomics = absl::StrCat("skipped: ", skipped);
  }

  // 4. Verify.
  auto verified = Transfer(
      *lease, connection, client::RdmaOpKind::kRead, range.offset, range.length, chunk,
      options.depth, nullptr, [&](uint64_t at, const uint8_t* data, size_t n) -> absl::Status {
        const Mismatch m = CompareWithPattern(options.pattern, file_base + at, data, n);
        if (m.count == 0) return absl::OkStatus();
        const uint64_t where = file_base + at + m.first;
        return MismatchError(*lease, where, data[m.first], PatternByte(options.pattern, where),
                             m.count, n, absl::StrCat("the pattern (seed ", options.pattern, ")"));
      });
  if (!verified.ok()) return out.Error("verify", verified.status());
  out.Emit("verify", Fields()
                         .Str("lease_id", lease->id())
                         .Num("bytes", verified->bytes)
                         .Bool("verified", true)
                         .Real("seconds", absl::ToDoubleSeconds(verified->elapsed))
                         .Real("mib_per_s", verified->MiBPerSecond())
                         .Str("atomics", atomics));

  // 5. Restore.
  if (options.restore) {
    auto restored = Transfer(
        *lease, connection, client::RdmaOpKind::kWrite, range.offset, range.length, chunk,
        options.depth,
        [&](uint64_t at, uint8_t* data, size_t n) {
          std::memcpy(data, saved.data() + (at - range.offset), n);
        },
        nullptr);
    if (!restored.ok()) return out.Error("restore the original bytes", restored.status());
    auto reread = Transfer(*lease, connection, client::RdmaOpKind::kRead, range.offset,
                           range.length, chunk, options.depth, nullptr,
                           [&](uint64_t at, const uint8_t* data, size_t n) -> absl::Status {
                             const uint8_t* want = saved.data() + (at - range.offset);
                             for (size_t i = 0; i < n; ++i) {
                               if (data[i] != want[i]) {
                                 return MismatchError(*lease, file_base + at + i, data[i], want[i],
                                                      1, n, "the original");
                               }
                             }
                             return absl::OkStatus();
                           });
    if (!reread.ok()) return out.Error("verify the restored bytes", reread.status());
  }

  if (absl::Status s = lease->Release(); !s.ok()) return out.Error("release", s);
  out.Emit("check", Fields()
                        .Str("result", "ok")
                        .Str("lease_id", lease->id())
                        .Str("device", connection.device())
                        .Num("bytes", range.length)
                        .Num("chunk", chunk)
                        .Real("verify_mib_per_s", verified->MiBPerSecond())
                        .Str("atomics", atomics)
                        .Bool("restored", options.restore));
  return kExitOk;
}

}  // namespace pinrdma
