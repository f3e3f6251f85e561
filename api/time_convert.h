// Conversion between abseil's time types and protobuf's well-known Timestamp and Duration, as
// the broker and every client put them on the wire.
//
// An infinite absl::Time (never, or unknown) is sent as an unset Timestamp (all zero), which
// reads back as the Unix epoch. Durations keep their sign: seconds and nanos both carry it, as
// google.protobuf.Duration requires. Thread-safety: stateless functions.
#pragma once

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"

namespace pinbroker {

void ToProto(absl::Time t, google::protobuf::Timestamp* out);
void ToProto(absl::Duration d, google::protobuf::Duration* out);
absl::Time FromProto(const google::protobuf::Timestamp& t);
absl::Duration FromProto(const google::protobuf::Duration& d);

}  // namespace pinbroker
