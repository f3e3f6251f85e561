// Conversions between the engine's types (pinning/) and the API's messages (pinbroker.v1).
//
// Requests are validated here only as far as their shape goes (enum values, durations); the
// engine validates meaning. Thread-safety: stateless functions.
#pragma once

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "api/time_convert.h"
#include "broker/lease_id_codec.h"
#include "pinbroker/v1/pinbroker.pb.h"
#include "pinning/layout_coordinator.h"
#include "pinning/lease.h"
#include "pinning/pin_service.h"

namespace pinbroker::broker {

namespace pb = ::pinbroker::v1;

// The time conversions (api/time_convert.h) join the overloads below.
using ::pinbroker::FromProto;
using ::pinbroker::ToProto;
// A duration field that must not be negative; `field` names it in the error.
absl::StatusOr<absl::Duration> NonNegative(const google::protobuf::Duration& d,
                                           absl::string_view field);

absl::StatusOr<Access> FromProto(pb::Access access);
pb::Access ToProto(Access access);
pb::RegistrationMode ToProto(RegistrationMode mode);
pb::LeaseState ToProto(LeaseState state);
pb::LayoutPolicy ToProto(LayoutPolicy policy);
// nullopt for UNSPECIFIED (the export's default); INVALID_ARGUMENT for unknown values.
absl::StatusOr<std::optional<LayoutPolicy>> FromProto(pb::LayoutPolicy policy);
pb::FileId ToProto(const FileId& id);
void ToProto(const PageRange& pages, uint64_t page_size, pb::ByteRange* out);

void ToProto(const LeaseInfo& lease, const LeaseIdCodec& ids, pb::Lease* out);
void ToProto(const LayoutResult& result, const LeaseIdCodec& ids, uint64_t page_size,
             pb::LayoutChangeResponse* out);
void ToProto(const FileDescription& file, const LeaseIdCodec& ids, uint64_t page_size,
             pb::DescribeFileResponse* out);
// The engine's view of a layout request's options.
absl::StatusOr<LayoutRequest> FromProto(const pb::LayoutOptions& options, std::string export_name,
                                        std::string path);
pb::WatchEvent::Type ToProto(LeaseEvent::Type type);

}  // namespace pinbroker::broker
