// file truncate | punch | describe
//
// A layout change may legitimately take as long as its policy allows (defer: the timeout;
// revoke: the grace, then the drain), and the broker bounds it. pinctl's deadline for it is
// therefore the change's own bound plus the global --timeout: --timeout and --grace when given,
// else the export's values from GetInfo. A client-side deadline shorter than the broker's would
// leave the caller not knowing whether the change was applied.
#include "absl/strings/str_cat.h"
#include "clients/pinctl/commands.h"
#include "clients/pinctl/views.h"

namespace pinctl {
namespace {

namespace v1 = ::pinbroker::v1;

// Builds LayoutOptions from --policy/--grace/--timeout/--initiator; false after a usage error.
bool MakeLayoutOptions(Invocation& inv, v1::LayoutOptions* options) {
  const std::string policy = inv.args.Get("policy").value_or("");
  if (policy == "defer") {
    options->set_policy(v1::LAYOUT_POLICY_DEFER);
  } else if (policy == "revoke") {
    options->set_policy(v1::LAYOUT_POLICY_REVOKE);
  } else if (policy == "refuse") {
    options->set_policy(v1::LAYOUT_POLICY_REFUSE);
  } else if (!policy.empty()) {
    inv.out.UsageError(
        absl::StrCat("--policy must be defer, revoke or refuse, not '", policy, "'"));
    return false;
  }
  absl::Duration d;
  if (inv.args.Has("grace")) {
    if (!GetDuration(inv, "grace", absl::ZeroDuration(), &d)) return false;
    ToProto(d, options->mutable_grace());
  }
  if (inv.args.Has("timeout")) {
    if (!GetDuration(inv, "timeout", absl::ZeroDuration(), &d)) return false;
    ToProto(d, options->mutable_timeout());
  }
  options->set_initiator(inv.args.Get("initiator").value_or("pinctl"));
  return true;
}

// How long the broker may take for a layout change on `export_name` with `options`.
absl::Duration LayoutBound(Invocation& inv, const std::string& export_name,
                           const v1::LayoutOptions& options) {
  absl::Duration grace = FromProto(options.grace());
  absl::Duration timeout = FromProto(options.timeout());
  if (!options.has_grace() || !options.has_timeout()) {
    v1::GetInfoResponse info;
    const grpc::Status status = inv.connection.broker().GetInfo(inv.connection.Context().get(),
                                                                v1::GetInfoRequest(), &info);
    absl::Duration export_grace = absl::Minutes(10);  // Unknown: generous.
    absl::Duration export_timeout = absl::Minutes(10);
    if (status.ok()) {
      for (const v1::ExportInfo& e : info.exports()) {
        if (e.name() != export_name) continue;
        export_grace = FromProto(e.grace());
        export_timeout = FromProto(e.layout_timeout());
      }
    }
    if (!options.has_grace()) grace = export_grace;
    if (!options.has_timeout()) timeout = export_timeout;
  }
  return grace + timeout;
}

int LayoutReply(Invocation& inv, const grpc::Status& status,
                const v1::LayoutChangeResponse& response, const char* what) {
  if (!status.ok()) return inv.out.RpcError(status, what);
  if (inv.out.json()) {
    inv.out.Json(response);
  } else {
    PrintLayoutChange(inv.out, response);
  }
  return kExitOk;
}

}  // namespace

int RunFileTruncate(Invocation& inv) {
  if (!inv.args.Has("size")) return inv.out.UsageError("file truncate needs --size N");
  v1::TruncateRequest request;
  uint64_t size = 0;
  if (!GetSize(inv, "size", 0, &size)) return kExitUsage;
  if (!MakeLayoutOptions(inv, request.mutable_options())) return kExitUsage;
  request.set_export_name(inv.args.positional()[0]);
  request.set_path(inv.args.positional()[1]);
  request.set_new_size(size);
  const absl::Duration bound = LayoutBound(inv, request.export_name(), request.options());
  v1::LayoutChangeResponse response;
  const grpc::Status status =
      inv.connection.broker().Truncate(inv.connection.Context(bound).get(), request, &response);
  return LayoutReply(inv, status, response, "truncate");
}

int RunFilePunch(Invocation& inv) {
  if (!inv.args.Has("offset") || !inv.args.Has("length")) {
    return inv.out.UsageError("file punch needs --offset N and --length N");
  }
  v1::PunchHoleRequest request;
  uint64_t offset = 0;
  uint64_t length = 0;
  if (!GetSize(inv, "offset", 0, &offset) || !GetSize(inv, "length", 0, &length)) {
    return kExitUsage;
  }
  if (!MakeLayoutOptions(inv, request.mutable_options())) return kExitUsage;
  request.set_export_name(inv.args.positional()[0]);
  request.set_path(inv.args.positional()[1]);
  request.set_offset(offset);
  request.set_length(length);
  const absl::Duration bound = LayoutBound(inv, request.export_name(), request.options());
  v1::LayoutChangeResponse response;
  const grpc::Status status =
      inv.connection.broker().PunchHole(inv.connection.Context(bound).get(), request, &response);
  return LayoutReply(inv, status, response, "punch hole");
}

int RunFileDescribe(Invocation& inv) {
  v1::DescribeFileRequest request;
  request.set_export_name(inv.args.positional()[0]);
  request.set_path(inv.args.positional()[1]);
  v1::DescribeFileResponse response;
  const grpc::Status status =
      inv.connection.broker().DescribeFile(inv.connection.Context().get(), request, &response);
  if (!status.ok()) return inv.out.RpcError(status, "describe");
  if (inv.out.json()) {
    inv.out.Json(response);
  } else {
    PrintDescribe(inv.out, response);
  }
  return kExitOk;
}

}  // namespace pinctl
