#include "broker/proto_convert.h"

#include <sys/sysmacros.h>

#include "absl/strings/str_cat.h"

namespace pinbroker::broker {

absl::StatusOr<absl::Duration> NonNegative(const google::protobuf::Duration& d,
                                           absl::string_view field) {
  const absl::Duration value = FromProto(d);
  if (value < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must not be negative (got ", absl::FormatDuration(value), ")"));
  }
  return value;
}

absl::StatusOr<Access> FromProto(pb::Access access) {
  switch (access) {
    case pb::ACCESS_READ:
      return Access::kRead;
    case pb::ACCESS_READ_WRITE:
      return Access::kReadWrite;
    default:
      return absl::InvalidArgumentError(
          "access must be ACCESS_READ or ACCESS_READ_WRITE (it was unset or unknown)");
  }
}

pb::Access ToProto(Access access) {
  return access == Access::kRead ? pb::ACCESS_READ : pb::ACCESS_READ_WRITE;
}

pb::RegistrationMode ToProto(RegistrationMode mode) {
  switch (mode) {
    case RegistrationMode::kHost:
      return pb::REGISTRATION_MODE_HOST;
    case RegistrationMode::kPinned:
      return pb::REGISTRATION_MODE_PINNED;
    case RegistrationMode::kOdp:
      return pb::REGISTRATION_MODE_ODP;
  }
  return pb::REGISTRATION_MODE_UNSPECIFIED;
}

pb::LeaseState ToProto(LeaseState state) {
  switch (state) {
    case LeaseState::kGranted:
      return pb::LEASE_STATE_GRANTED;
    case LeaseState::kRecalling:
      return pb::LEASE_STATE_RECALLING;
    case LeaseState::kReleased:
      return pb::LEASE_STATE_RELEASED;
    case LeaseState::kRevoked:
      return pb::LEASE_STATE_REVOKED;
    case LeaseState::kExpired:
      return pb::LEASE_STATE_EXPIRED;
  }
  return pb::LEASE_STATE_UNSPECIFIED;
}

pb::LayoutPolicy ToProto(LayoutPolicy policy) {
  switch (policy) {
    case LayoutPolicy::kDefer:
      return pb::LAYOUT_POLICY_DEFER;
    case LayoutPolicy::kRevoke:
      return pb::LAYOUT_POLICY_REVOKE;
    case LayoutPolicy::kRefuse:
      return pb::LAYOUT_POLICY_REFUSE;
  }
  return pb::LAYOUT_POLICY_UNSPECIFIED;
}

absl::StatusOr<std::optional<LayoutPolicy>> FromProto(pb::LayoutPolicy policy) {
  switch (policy) {
    case pb::LAYOUT_POLICY_UNSPECIFIED:
      return std::optional<LayoutPolicy>();
    case pb::LAYOUT_POLICY_DEFER:
      return LayoutPolicy::kDefer;
    case pb::LAYOUT_POLICY_REVOKE:
      return LayoutPolicy::kRevoke;
    case pb::LAYOUT_POLICY_REFUSE:
      return LayoutPolicy::kRefuse;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown layout policy ", policy, "; use DEFER, REVOKE or REFUSE"));
  }
}

pb::FileId ToProto(const FileId& id) {
  pb::FileId out;
  out.set_device_major(major(id.dev));
  out.set_device_minor(minor(id.dev));
  out.set_inode(id.ino);
  return out;
}

void ToProto(const PageRange& pages, uint64_t page_size, pb::ByteRange* out) {
  const ByteRange bytes = ToBytes(pages, page_size);
  out->set_offset(bytes.offset);
  if (pages.end == kPageRangeToInfinity) {
    out->set_length(0);
    out->set_to_end_of_file(true);
  } else {
    out->set_length(bytes.length);
  }
}

void ToProto(const LeaseInfo& lease, const LeaseIdCodec& ids, pb::Lease* out) {
  out->set_lease_id(ids.Format(lease.id));
  out->set_session_id(lease.owner);
  out->set_export_name(lease.export_name);
  out->set_path(lease.path);
  *out->mutable_file() = ToProto(lease.file);
  out->mutable_range()->set_offset(lease.offset);
  out->mutable_range()->set_length(lease.length);
  out->set_access(ToProto(lease.access));
  out->set_mode(ToProto(lease.mode));
  out->set_state(ToProto(lease.state));
  ToProto(lease.granted_at, out->mutable_granted_at());
  ToProto(lease.expires_at, out->mutable_expires_at());
  if (lease.state == LeaseState::kRecalling) {
    ToProto(lease.recall_deadline, out->mutable_recall_deadline());
  }
  out->set_reason(lease.reason);
  if (!lease.rdma.device.empty()) {
    pb::RdmaAccess* rdma = out->mutable_rdma();
    rdma->set_device(lease.rdma.device);
    rdma->set_rkey(lease.rdma.rkey);
    rdma->set_remote_address(lease.rdma.remote_address);
    rdma->set_length(lease.rdma.length);
    rdma->set_required_alignment(lease.rdma.required_alignment);
    rdma->set_max_transfer_size(lease.rdma.max_transfer_size);
    rdma->set_constraint_reason(lease.rdma.constraint_reason);
  }
}

namespace {
void AddIds(const std::vector<LeaseId>& in, const LeaseIdCodec& ids,
            google::protobuf::RepeatedPtrField<std::string>* out) {
  for (LeaseId id : in) out->Add(ids.Format(id));
}
}  // namespace

void ToProto(const LayoutResult& result, const LeaseIdCodec& ids, uint64_t page_size,
             pb::LayoutChangeResponse* out) {
  out->set_policy(ToProto(result.policy));
  ToProto(result.affected, page_size, out->mutable_affected());
  out->set_size_before(result.size_before);
  out->set_size_after(result.size_after);
  AddIds(result.recalled, ids, out->mutable_recalled_lease_ids());
  AddIds(result.released, ids, out->mutable_released_lease_ids());
  AddIds(result.expired, ids, out->mutable_expired_lease_ids());
  AddIds(result.revoked, ids, out->mutable_revoked_lease_ids());
  out->set_others_recalled(result.undisclosed.recalled);
  out->set_others_released(result.undisclosed.released);
  out->set_others_expired(result.undisclosed.expired);
  out->set_others_revoked(result.undisclosed.revoked);
  ToProto(result.waited, out->mutable_waited());
}

void ToProto(const FileDescription& file, const LeaseIdCodec& ids, uint64_t page_size,
             pb::DescribeFileResponse* out) {
  out->set_export_name(file.export_name);
  out->set_path(file.path);
  *out->mutable_file() = ToProto(file.info.id);
  out->set_size(file.info.size);
  out->set_dax(file.info.dax);
  out->set_filesystem(file.info.fs_type);
  for (const LeaseInfo& lease : file.leases) ToProto(lease, ids, out->add_leases());
  for (const auto& entry : file.busy) {
    pb::BusyRange* busy = out->add_busy();
    ToProto(entry.range, page_size, busy->mutable_range());
    if (entry.lease != 0) busy->set_lease_id(ids.Format(entry.lease));  // 0: not shown.
    busy->set_being_set_up(!entry.held);
  }
  for (const auto& block : file.blocked) {
    pb::BlockedRange* blocked = out->add_blocked();
    ToProto(block.range, page_size, blocked->mutable_range());
    blocked->set_reason(block.reason);
  }
  for (const RegistrationInfo& r : file.registrations) {
    pb::Registration* reg = out->add_registrations();
    reg->set_device(r.device);
    reg->set_mode(ToProto(r.mode));
    reg->mutable_range()->set_offset(r.range.offset);
    reg->mutable_range()->set_length(r.range.length);
    reg->set_windows(r.windows);
    reg->set_stale(r.stale);
  }
  out->set_guard(file.guard);
  for (const std::string& op : file.unguarded_operations) out->add_unguarded_operations(op);
}

absl::StatusOr<LayoutRequest> FromProto(const pb::LayoutOptions& options, std::string export_name,
                                        std::string path) {
  LayoutRequest request;
  request.export_name = std::move(export_name);
  request.path = std::move(path);
  auto policy = FromProto(options.policy());
  if (!policy.ok()) return policy.status();
  request.policy = *policy;
  if (options.has_grace()) {
    auto grace = NonNegative(options.grace(), "options.grace");
    if (!grace.ok()) return grace.status();
    request.grace = *grace;
  }
  if (options.has_timeout()) {
    auto timeout = NonNegative(options.timeout(), "options.timeout");
    if (!timeout.ok()) return timeout.status();
    request.timeout = *timeout;
  }
  request.initiator = options.initiator().empty() ? "unnamed client" : options.initiator();
  return request;
}

pb::WatchEvent::Type ToProto(LeaseEvent::Type type) {
  switch (type) {
    case LeaseEvent::Type::kGranted:
      return pb::WatchEvent::GRANTED;
    case LeaseEvent::Type::kRecalled:
      return pb::WatchEvent::RECALLED;
    case LeaseEvent::Type::kReleased:
      return pb::WatchEvent::RELEASED;
    case LeaseEvent::Type::kRevoked:
      return pb::WatchEvent::REVOKED;
    case LeaseEvent::Type::kExpired:
      return pb::WatchEvent::EXPIRED;
  }
  return pb::WatchEvent::TYPE_UNSPECIFIED;
}

}  // namespace pinbroker::broker
