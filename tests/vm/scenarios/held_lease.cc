#include "tests/vm/scenarios/held_lease.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace pinbroker::scenarios {

absl::StatusOr<std::unique_ptr<HeldLease>> HeldLease::Pin(Fixture& f, const Spec& spec) {
  std::unique_ptr<HeldLease> held(new HeldLease());
  held->spec_ = spec;
  ASSIGN_OR_RETURN(held->peer_, f.Connect(spec.client_name, spec.rdma));
  if (spec.rdma) {
    client::RdmaPinOptions pin = f.PinOptions(spec.file, spec.offset, spec.length, spec.writable);
    pin.stop_on_recall = false;  // The scenario decides what the holder does on a recall.
    pin.release_on_recall = false;
    held->events_.Hook(pin);
    auto lease = client::RdmaLease::Pin(*held->peer_->client, *held->peer_->rdma, pin);
    if (!lease.ok()) return Context(lease.status(), "RDMA pin");
    held->rdma_lease_ = *std::move(lease);
    return held;
  }
  client::PinOptions pin;
  pin.export_name = f.export_name();
  pin.path = spec.file;
  pin.offset = spec.offset;
  pin.length = spec.length;
  pin.access = spec.writable ? v1::ACCESS_READ_WRITE : v1::ACCESS_READ;
  pin.ttl = absl::Seconds(120);
  held->events_.Hook(pin);
  auto lease = held->peer_->client->Pin(pin);
  if (!lease.ok()) return Context(lease.status(), "host pin");
  held->host_lease_ = *std::move(lease);
  return held;
}

const std::string& HeldLease::id() const {
  return rdma_lease_ != nullptr ? rdma_lease_->id() : host_lease_->id();
}

client::LeaseState HeldLease::state() const {
  return rdma_lease_ != nullptr ? rdma_lease_->state() : host_lease_->state();
}

std::string HeldLease::Describe() const {
  const char* access = spec_.writable ? "read-write" : "read-only";
  if (rdma_lease_ == nullptr) return absl::StrCat("host lease ", id(), " (", access, ")");
  return absl::StrFormat("RDMA lease %s (%s, rkey 0x%x, %s)", id(),
                         v1::RegistrationMode_Name(rdma_lease_->lease().mode()),
                         rdma_lease_->rdma().rkey(), access);
}

absl::Status HeldLease::Use(Fixture& f, std::string& model, uint64_t seed, absl::string_view what) {
  if (rdma_lease_ == nullptr) {
    if (!client::IsLive(state())) {
      return absl::FailedPreconditionError(absl::StrCat(what, ": host lease ", id(), " is ",
                                                        client::LeaseStateName(state()),
                                                        ", expected granted or recalling"));
    }
    return f.ExpectFileIs(spec_.file, model, what);
  }
  if (spec_.writable) {
    const std::string page = Pattern(seed, spec_.offset, kPage);
    const absl::Status s = RdmaWrite(*rdma_lease_, *peer_, 0, page);
    if (!s.ok()) return Context(s, absl::StrCat(what, ": RDMA WRITE through ", id()));
    model.replace(spec_.offset, page.size(), page);
  }
  auto read = RdmaRead(*rdma_lease_, *peer_, 0, spec_.length);
  if (!read.ok()) return Context(read.status(), absl::StrCat(what, ": RDMA READ through ", id()));
  const std::string diff =
      DescribeDifference(*read, model.substr(spec_.offset, spec_.length), spec_.offset);
  if (!diff.empty()) {
    return absl::DataLossError(absl::StrCat(what, ": RDMA READ through ", id(),
                                            " returned other bytes than expected: ", diff));
  }
  return f.ExpectFileIs(spec_.file, model, absl::StrCat(what, " (after the RDMA that completed)"));
}

absl::Status HeldLease::ExpectInvalidated(Fixture& f, const std::string& model,
                                          absl::string_view what) {
  if (rdma_lease_ == nullptr) {
    if (state() != client::LeaseState::kRevoked) {
      return absl::FailedPreconditionError(absl::StrCat(what, ": host lease ", id(), " is ",
                                                        client::LeaseStateName(state()),
                                                        ", expected revoked"));
    }
    return f.ExpectFileIs(spec_.file, model, what);
  }
  client::RdmaOpOptions probe;
  probe.after_end = true;  // Post anyway: the broker must really have invalidated the key.
  const std::string page = Pattern(0xdead, spec_.offset, kPage);
  absl::Status s;
  if (spec_.writable) {
    std::memcpy(peer_->buffer.data(), page.data(), page.size());
    s = rdma_lease_->Write(0, peer_->buffer, 0, kPage, probe);
  } else {
    s = rdma_lease_->Read(0, peer_->buffer, 0, kPage, probe);
  }
  if (s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": an RDMA ", spec_.writable ? "WRITE" : "READ",
                     " through the revoked lease ", id(), " succeeded"));
  }
  return f.ExpectFileIs(spec_.file, model, absl::StrCat(what, " (after the refused RDMA)"));
}

absl::Status HeldLease::Release() {
  return rdma_lease_ != nullptr ? rdma_lease_->Release() : host_lease_->Release();
}

}  // namespace pinbroker::scenarios
