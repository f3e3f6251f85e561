#include "pinning/guard/guard_arbiter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"

namespace pinbroker::guard {
namespace {

std::string Summarize(const LayoutResult& result) {
  return absl::StrCat(
      "policy ", LayoutPolicyName(result.policy), ": recalled [",
      absl::StrJoin(result.recalled, ","), "], released [", absl::StrJoin(result.released, ","),
      "], expired [", absl::StrJoin(result.expired, ","), "], revoked [",
      absl::StrJoin(result.revoked, ","), "], waited ", absl::FormatDuration(result.waited));
}

}  // namespace

std::string GuardArbiter::Describe(const ClassifiedChange& change, uint64_t size_before) {
  switch (change.kind) {
    case ClassifiedChange::Kind::kTruncate:
      return absl::StrCat("out-of-band ", change.call, " from ", size_before, " to ",
                          change.new_size, " bytes");
    case ClassifiedChange::Kind::kPunch:
      return absl::StrCat("out-of-band ", change.call, " of bytes [", change.offset, ", ",
                          change.offset + change.length, ")");
    case ClassifiedChange::Kind::kShift:
      return absl::StrCat("out-of-band ", change.call, " from byte ", change.offset);
    default:
      return absl::StrCat("out-of-band ", change.call);
  }
}

absl::StatusOr<LayoutResult> GuardArbiter::Coordinate(const Request& request, LayoutPolicy policy,
                                                      absl::Duration grace, absl::Time deadline,
                                                      absl::FunctionRef<void()> let_go,
                                                      bool* let_go_called) {
  ExternalChange change;
  change.size_before = request.size_before;
  change.description = Describe(request.change, request.size_before);
  switch (request.change.kind) {
    case ClassifiedChange::Kind::kTruncate:
      change.kind = ExternalChange::Kind::kTruncate;
      change.new_size = request.change.new_size;
      break;
    case ClassifiedChange::Kind::kPunch:
      change.kind = ExternalChange::Kind::kPunchHole;
      change.offset = request.change.offset;
      change.length = request.change.length;
      break;
    default:  // kShift; Decide() never passes a change that does not change the layout.
      change.kind = ExternalChange::Kind::kFromOffset;
      change.offset = request.change.offset;
      break;
  }
  LayoutOptions options;
  options.policy = policy;
  options.grace = std::max(grace, absl::ZeroDuration());
  options.deadline = deadline;
  options.initiator = absl::StrCat(request.actor, ", caught by ", request.mechanism);
  return service_->CoordinateExternal(request.file, change, options, [&]() -> absl::Status {
    *let_go_called = true;
    let_go();
    return absl::OkStatus();
  });
}

GuardArbiter::Verdict GuardArbiter::Decide(const Request& request,
                                           absl::FunctionRef<void()> let_go) {
  ExportOptions defaults;  // An export that vanished (cannot happen while it has leases).
  if (std::optional<ExportOptions> exp = service_->ExportOptionsFor(request.export_name)) {
    defaults = *std::move(exp);
  }
  Clock* const clock = service_->clock();
  const absl::Time now = clock->Now();
  bool called = false;
  Verdict verdict;

  if (request.interception == Interception::kCanFail) {
    absl::StatusOr<LayoutResult> result =
        Coordinate(request, defaults.default_policy, defaults.grace, now + defaults.layout_timeout,
                   let_go, &called);
    verdict.allowed = called;
    if (result.ok()) {
      verdict.summary = Summarize(*result);
    } else {
      verdict.summary = std::string(result.status().message());
      if (!called) verdict.error = EBUSY;
    }
    return verdict;
  }

  // Delay-only: the kernel lets the caller go at answer_by whatever happens, so every policy
  // must have ended the leases in the way by then.
  const absl::Time budget = std::max(request.answer_by - kLeaseBreakMargin, now);
  absl::StatusOr<LayoutResult> result;
  std::string note;
  switch (defaults.default_policy) {
    case LayoutPolicy::kDefer:
      result = Coordinate(request, LayoutPolicy::kDefer, absl::ZeroDuration(),
                          std::min(now + defaults.layout_timeout, budget), let_go, &called);
      if (!result.ok() && !called) {
        note = absl::StrCat("defer gave up (", result.status().message(),
                            "); a file-lease breaker cannot be failed, so: ");
        result = Coordinate(request, LayoutPolicy::kRevoke, absl::ZeroDuration(),
                            std::max(budget, clock->Now()), let_go, &called);
      }
      break;
    case LayoutPolicy::kRevoke:
      result = Coordinate(request, LayoutPolicy::kRevoke, std::min(defaults.grace, budget - now),
                          budget, let_go, &called);
      break;
    case LayoutPolicy::kRefuse:
      note = "refuse cannot fail a file-lease breaker; the leases in the way are revoked at once: ";
      result =
          Coordinate(request, LayoutPolicy::kRevoke, absl::ZeroDuration(), budget, let_go, &called);
      break;
  }
  if (!called) {
    // The coordinator could not end every lease in the way (a backend failed to invalidate):
    // the kernel will let the caller go anyway; do it now and say so.
    PB_LOG(ERROR) << Describe(request.change, request.size_before) << " by " << request.actor
                  << " goes ahead with leases still in the way: " << result.status();
    let_go();
    called = true;
  }
  verdict.allowed = true;
  verdict.summary =
      absl::StrCat(note, result.ok() ? Summarize(*result) : std::string(result.status().message()));
  return verdict;
}

}  // namespace pinbroker::guard
