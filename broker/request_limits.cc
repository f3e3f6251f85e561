#include "broker/request_limits.h"

#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace pinbroker::broker {
namespace {

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF.
bool IsUtf8(absl::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const unsigned char* end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) <= n) return false;
    for (size_t i = 1; i <= n; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10ffff))) {
      return false;
    }
    p += n + 1;
  }
  return true;
}

absl::Status CheckString(absl::string_view field, absl::string_view value, size_t limit) {
  if (value.size() > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(), " bytes; the limit is ", limit, " bytes"));
  }
  if (!IsUtf8(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is not valid UTF-8: ", QuoteClientInput(value)));
  }
  return absl::OkStatus();
}

absl::Status CheckCredentials(const v1::SessionCredentials& c) {
  RETURN_IF_ERROR(CheckString("credentials.session_id", c.session_id(), RequestLimits::kSessionId));
  return CheckString("credentials.token", c.token(), RequestLimits::kToken);
}

absl::Status CheckFile(absl::string_view export_name, absl::string_view path) {
  RETURN_IF_ERROR(CheckString("export_name", export_name, RequestLimits::kExportName));
  return CheckString("path", path, RequestLimits::kPath);
}

}  // namespace

std::string QuoteClientInput(absl::string_view text) {
  const size_t n = std::min(text.size(), RequestLimits::kQuotedPrefix);
  std::string out = absl::StrCat("\"", absl::CHexEscape(text.substr(0, n)), "\"");
  if (n < text.size()) absl::StrAppend(&out, "... (", text.size(), " bytes)");
  return out;
}

absl::Status Validate(const v1::OpenSessionRequest& r) {
  return CheckString("client_name", r.client_name(), RequestLimits::kClientName);
}
absl::Status Validate(const v1::RenewSessionRequest& r) {
  return CheckCredentials(r.credentials());
}
absl::Status Validate(const v1::CloseSessionRequest& r) {
  return CheckCredentials(r.credentials());
}
absl::Status Validate(const v1::WatchRequest& r) { return CheckCredentials(r.credentials()); }

absl::Status Validate(const v1::PinRequest& r) {
  RETURN_IF_ERROR(CheckCredentials(r.credentials()));
  return CheckFile(r.export_name(), r.path());
}

absl::Status Validate(const v1::RenewRequest& r) {
  RETURN_IF_ERROR(CheckCredentials(r.credentials()));
  return CheckString("lease_id", r.lease_id(), RequestLimits::kLeaseId);
}

absl::Status Validate(const v1::ReleaseRequest& r) {
  RETURN_IF_ERROR(CheckCredentials(r.credentials()));
  return CheckString("lease_id", r.lease_id(), RequestLimits::kLeaseId);
}

absl::Status Validate(const v1::ListLeasesRequest& r) {
  RETURN_IF_ERROR(CheckFile(r.export_name(), r.path()));
  RETURN_IF_ERROR(CheckString("session_id", r.session_id(), RequestLimits::kSessionId));
  RETURN_IF_ERROR(CheckString("page_token", r.page_token(), RequestLimits::kPageToken));
  if (r.page_size() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size is ", r.page_size(), "; use 0 for the default (",
        RequestLimits::kDefaultLeasePage, ") or up to ", RequestLimits::kMaxLeasePage));
  }
  return absl::OkStatus();
}

absl::Status Validate(const v1::DescribeFileRequest& r) {
  return CheckFile(r.export_name(), r.path());
}

absl::Status Validate(const v1::TruncateRequest& r) {
  RETURN_IF_ERROR(CheckFile(r.export_name(), r.path()));
  return CheckString("options.initiator", r.options().initiator(), RequestLimits::kInitiator);
}

absl::Status Validate(const v1::PunchHoleRequest& r) {
  RETURN_IF_ERROR(CheckFile(r.export_name(), r.path()));
  return CheckString("options.initiator", r.options().initiator(), RequestLimits::kInitiator);
}

absl::Status Validate(const v1::EchoRequest& r) {
  if (r.payload().size() > RequestLimits::kEchoPayload) {
    return absl::InvalidArgumentError(absl::StrCat("payload is ", r.payload().size(),
                                                   " bytes; the limit is ",
                                                   RequestLimits::kEchoPayload, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace pinbroker::broker
