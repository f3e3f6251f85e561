#include "broker/authorizer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pinbroker::broker {
namespace {

bool Empty(const v1::AccessRule& rule) {
  return rule.uids().empty() && rule.gids().empty() && rule.principals().empty();
}

bool Admits(const v1::AccessRule& rule, const PeerIdentity& caller) {
  if (caller.kind == PeerIdentity::Kind::kUnix) {
    if (std::find(rule.uids().begin(), rule.uids().end(), caller.unix.uid) != rule.uids().end()) {
      return true;
    }
    for (gid_t gid : rule.gids()) {
      if (gid == caller.unix.gid || std::find(caller.unix.groups.begin(), caller.unix.groups.end(),
                                              gid) != caller.unix.groups.end()) {
        return true;
      }
    }
    return false;
  }
  if (caller.kind == PeerIdentity::Kind::kTls) {
    return std::find(rule.principals().begin(), rule.principals().end(), caller.principal) !=
           rule.principals().end();
  }
  return false;
}

std::string DescribeRule(const v1::AccessRule& rule) {
  std::vector<std::string> parts;
  if (!rule.uids().empty()) parts.push_back(absl::StrCat("uids [", absl::StrJoin(rule.uids(), ","), "]"));
  if (!rule.gids().empty()) parts.push_back(absl::StrCat("gids [", absl::StrJoin(rule.gids(), ","), "]"));
  if (!rule.principals().empty()) {
    parts.push_back(absl::StrCat("principals [", absl::StrJoin(rule.principals(), ","), "]"));
  }
  return parts.empty() ? "nobody" : absl::StrJoin(parts, " ");
}

}  // namespace

absl::string_view RightName(Right right) {
  switch (right) {
    case Right::kPin:
      return "pin";
    case Right::kPinWritable:
      return "pin_writable";
    case Right::kLayout:
      return "layout";
    case Right::kAdmin:
      break;
  }
  return "admin";
}

Authorizer::Authorizer(const v1::BrokerConfig& config,
                       absl::flat_hash_map<std::string, uid_t> root_owners) {
  for (const v1::ExportConfig& e : config.exports()) {
    Rules& rules = exports_[e.name()];
    rules.pin = e.pin();
    rules.pin_writable = e.pin_writable();
    rules.layout = e.layout();
    rules.admins = e.admins();
    if (auto it = root_owners.find(e.name()); it != root_owners.end()) {
      rules.root_owner = it->second;
    }
  }
}

absl::Status Authorizer::Check(const PeerIdentity& caller, absl::string_view export_name,
                               Right right) const {
  auto it = exports_.find(export_name);
  if (it == exports_.end()) return absl::OkStatus();
  const Rules& rules = it->second;
  const bool admin = caller.IsRoot() ||
                     (caller.kind == PeerIdentity::Kind::kUnix &&
                      caller.unix.uid == rules.root_owner) ||
                     Admits(rules.admins, caller);
  if (right == Right::kAdmin) {
    if (admin) return absl::OkStatus();
    return absl::PermissionDeniedError(absl::StrCat(
        caller.Describe(), " is not an admin of export '", export_name,
        "' (rule: admins are root, the export root's owner (uid ", rules.root_owner,
        ") and the export's admins: ", DescribeRule(rules.admins), ")"));
  }
  const v1::AccessRule& rule = right == Right::kPin           ? rules.pin
                               : right == Right::kPinWritable ? rules.pin_writable
                                                              : rules.layout;
  // An unset rule admits everyone (the file's permissions still decide); a set one admits only
  // those it lists.
  if (Empty(rule) || Admits(rule, caller)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      caller.Describe(), " may not ", RightName(right), " in export '", export_name,
      "' (rule: export '", export_name, "' ", RightName(right), " admits ", DescribeRule(rule),
      ")"));
}

bool Authorizer::IsAdminAnywhere(const PeerIdentity& caller) const {
  if (caller.IsRoot()) return true;
  for (const auto& [name, rules] : exports_) {
    if (IsAdmin(caller, name)) return true;
  }
  return false;
}

}  // namespace pinbroker::broker
