// Human-readable (-o table) renderings of pinbroker.v1 messages: lease tables, event lines,
// file descriptions, layout-change results and broker info.
//
// Thread-safety: stateless functions; printing goes through Output (main thread only).
#pragma once

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <string>
#include <vector>

#include "clients/pinctl/output.h"
#include "pinbroker/v1/pinbroker.pb.h"

namespace pinctl {

// "2024-05-01T10:00:00.123Z"; "-" when unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& t);
// "2.5s"
std::string FormatDuration(const google::protobuf::Duration& d);
// "[0, 65536)" or "[4096, EOF)"
std::string FormatRange(const pinbroker::v1::ByteRange& range);
// Lower-case short names: "granted", "rw", "revoke", "host".
std::string ShortName(pinbroker::v1::LeaseState state);
std::string ShortName(pinbroker::v1::Access access);
std::string ShortName(pinbroker::v1::LayoutPolicy policy);
std::string ShortName(pinbroker::v1::RegistrationMode mode);
std::string ShortName(pinbroker::v1::WatchEvent::Type type);

void PrintLeaseTable(Output& out, const std::vector<const pinbroker::v1::Lease*>& leases);
// Every field of one lease, one "key: value" per line.
void PrintLeaseDetail(Output& out, const pinbroker::v1::Lease& lease);
// One line per event: time, TYPE, lease id, export/path, range, state, deadline, reason.
std::string EventLine(const pinbroker::v1::WatchEvent& event);
void PrintDescribe(Output& out, const pinbroker::v1::DescribeFileResponse& file);
void PrintLayoutChange(Output& out, const pinbroker::v1::LayoutChangeResponse& result);
void PrintInfo(Output& out, const pinbroker::v1::GetInfoResponse& info);

}  // namespace pinctl
