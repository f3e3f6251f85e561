// Request limits: the bounds every request is checked against at the gRPC edge, before the
// engine sees it, so no single request can make the broker hold or log unbounded client text.
//
// One Validate() per request type, called once at the top of its handler. Each returns
// INVALID_ARGUMENT naming the field and its limit for a string longer than the limit or not
// valid UTF-8, or a count over its limit; OK otherwise. The limits are listed, with the same
// numbers, in docs/API.md ("Limits").
//
// QuoteClientInput() is how error messages and logs quote client-supplied text: a short,
// escaped prefix, so a 3 MiB path never comes back as a 12 MiB message.
//
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "pinbroker/v1/pinbroker.pb.h"

namespace pinbroker::broker {

namespace v1 = ::pinbroker::v1;

struct RequestLimits {
  static constexpr size_t kClientName = 256;  // OpenSessionRequest.client_name
  static constexpr size_t kInitiator = 256;   // LayoutOptions.initiator
  static constexpr size_t kExportName = 64;  // export_name (exports are named [A-Za-z0-9._-]{1,64})
  static constexpr size_t kPath = 4096;      // path (PATH_MAX)
  static constexpr size_t kSessionId = 128;  // SessionCredentials.session_id, session_id filters
  static constexpr size_t kToken = 128;      // SessionCredentials.token
  static constexpr size_t kLeaseId = 128;    // lease_id
  static constexpr size_t kEchoPayload = 1 << 20;  // EchoRequest.payload (bytes, any content)
  static constexpr size_t kQuotedPrefix = 64;      // Bytes of client text an error message quotes.
  static constexpr size_t kPageToken = 128;        // ListLeasesRequest.page_token
  static constexpr int kDefaultLeasePage = 500;    // ListLeasesRequest.page_size 0
  static constexpr int kMaxLeasePage = 1000;       // Larger page sizes are clamped to this.
};

// `text` as "\"<escaped first kQuotedPrefix bytes>\"", with "... (N bytes)" if it was longer.
std::string QuoteClientInput(absl::string_view text);

absl::Status Validate(const v1::OpenSessionRequest& request);
absl::Status Validate(const v1::RenewSessionRequest& request);
absl::Status Validate(const v1::CloseSessionRequest& request);
absl::Status Validate(const v1::WatchRequest& request);
absl::Status Validate(const v1::PinRequest& request);
absl::Status Validate(const v1::RenewRequest& request);
absl::Status Validate(const v1::ReleaseRequest& request);
absl::Status Validate(const v1::ListLeasesRequest& request);
absl::Status Validate(const v1::DescribeFileRequest& request);
absl::Status Validate(const v1::TruncateRequest& request);
absl::Status Validate(const v1::PunchHoleRequest& request);
absl::Status Validate(const v1::EchoRequest& request);

}  // namespace pinbroker::broker
