#include "clients/pinctl/views.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "api/time_convert.h"

namespace pinctl {

namespace v1 = ::pinbroker::v1;

namespace {

// "LEASE_STATE_GRANTED" -> "granted" after stripping `prefix`.
std::string Lower(const std::string& name, absl::string_view prefix) {
  return absl::AsciiStrToLower(absl::StripPrefix(name, prefix));
}

std::string Ids(const google::protobuf::RepeatedPtrField<std::string>& ids) {
  return ids.empty() ? "-" : absl::StrJoin(ids, ", ");
}

std::string Yes(bool b) { return b ? "yes" : "no"; }

}  // namespace

std::string FormatTimestamp(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", ::pinbroker::FromProto(t), absl::UTCTimeZone());
}

std::string FormatDuration(const google::protobuf::Duration& d) {
  return absl::FormatDuration(::pinbroker::FromProto(d));
}

std::string FormatRange(const v1::ByteRange& range) {
  if (range.to_end_of_file()) return absl::StrCat("[", range.offset(), ", EOF)");
  return absl::StrCat("[", range.offset(), ", ", range.offset() + range.length(), ")");
}

std::string ShortName(v1::LeaseState state) {
  return Lower(v1::LeaseState_Name(state), "LEASE_STATE_");
}
std::string ShortName(v1::Access access) {
  switch (access) {
    case v1::ACCESS_READ:
      return "read";
    case v1::ACCESS_READ_WRITE:
      return "rw";
    default:
      return Lower(v1::Access_Name(access), "ACCESS_");
  }
}
std::string ShortName(v1::LayoutPolicy policy) {
  return Lower(v1::LayoutPolicy_Name(policy), "LAYOUT_POLICY_");
}
std::string ShortName(v1::RegistrationMode mode) {
  return Lower(v1::RegistrationMode_Name(mode), "REGISTRATION_MODE_");
}
std::string ShortName(v1::WatchEvent::Type type) { return v1::WatchEvent::Type_Name(type); }

void PrintLeaseTable(Output& out, const std::vector<const v1::Lease*>& leases) {
  Table table({"LEASE", "SESSION", "HOLDER", "EXPORT", "PATH", "RANGE", "ACCESS", "MODE", "STATE",
               "EXPIRES", "TTL"});
  const absl::Time now = absl::Now();
  for (const v1::Lease* l : leases) {
    const absl::Time expires = ::pinbroker::FromProto(l->expires_at());
    table.Add({l->lease_id(), l->session_id(), l->holder().empty() ? "-" : l->holder(),
               l->export_name(), l->path(), FormatRange(l->range()), ShortName(l->access()),
               ShortName(l->mode()), ShortName(l->state()), FormatTimestamp(l->expires_at()),
               absl::FormatDuration(
                   absl::Trunc(std::max(expires - now, absl::ZeroDuration()), absl::Seconds(1)))});
  }
  if (table.empty()) {
    out.Line("no leases");
    return;
  }
  table.PrintTo(out);
}

void PrintLeaseDetail(Output& out, const v1::Lease& l) {
  Table t({"lease:", l.lease_id()});
  t.Add({"session:", l.session_id()});
  if (!l.holder().empty()) t.Add({"holder:", l.holder()});
  t.Add({"export:", l.export_name()});
  t.Add({"path:", l.path()});
  t.Add({"file:", absl::StrCat(l.file().device_major(), ":", l.file().device_minor(), " inode ",
                               l.file().inode())});
  t.Add({"range:", FormatRange(l.range())});
  t.Add({"access:", ShortName(l.access())});
  t.Add({"mode:", ShortName(l.mode())});
  t.Add({"state:", ShortName(l.state())});
  t.Add({"granted:", FormatTimestamp(l.granted_at())});
  t.Add({"expires:", FormatTimestamp(l.expires_at())});
  if (l.has_recall_deadline()) t.Add({"recall by:", FormatTimestamp(l.recall_deadline())});
  if (!l.reason().empty()) t.Add({"reason:", l.reason()});
  if (!l.rdma().device().empty()) {
    t.Add({"rdma:", absl::StrCat(l.rdma().device(), " rkey ", l.rdma().rkey(), " addr ",
                                 l.rdma().remote_address())});
  }
  t.PrintTo(out);
}

std::string EventLine(const v1::WatchEvent& e) {
  // Snapshot events carry no time: they describe the present.
  std::string line = e.has_at() ? absl::StrCat(FormatTimestamp(e.at()), " ", ShortName(e.type()))
                                : ShortName(e.type());
  if (!e.has_lease()) return line;
  const v1::Lease& l = e.lease();
  absl::StrAppend(&line, " ", l.lease_id(), " ", l.export_name(), "/", l.path(), " ",
                  FormatRange(l.range()), " ", ShortName(l.state()));
  if (l.has_recall_deadline()) {
    absl::StrAppend(&line, " release-by ", FormatTimestamp(l.recall_deadline()));
  }
  if (!l.reason().empty()) absl::StrAppend(&line, " (", l.reason(), ")");
  return line;
}

void PrintDescribe(Output& out, const v1::DescribeFileResponse& f) {
  Table t({"export:", f.export_name()});
  t.Add({"path:", f.path()});
  t.Add({"file:", absl::StrCat(f.file().device_major(), ":", f.file().device_minor(), " inode ",
                               f.file().inode())});
  t.Add({"size:", absl::StrCat(f.size())});
  t.Add({"filesystem:", f.filesystem()});
  t.Add({"dax:", Yes(f.dax())});
  t.Add({"guard:", f.guard()});
  if (!f.unguarded_operations().empty()) {
    t.Add({"unguarded:", absl::StrJoin(f.unguarded_operations(), ", ")});
  }
  t.PrintTo(out);
  out.Line("");
  Table busy({"BUSY RANGE", "LEASE", "SETTING UP"});
  for (const v1::BusyRange& b : f.busy()) {
    busy.Add({FormatRange(b.range()), b.lease_id(), Yes(b.being_set_up())});
  }
  if (busy.empty()) {
    out.Line("no busy ranges");
  } else {
    busy.PrintTo(out);
  }
  Table blocked({"BLOCKED RANGE", "REASON"});
  for (const v1::BlockedRange& b : f.blocked()) blocked.Add({FormatRange(b.range()), b.reason()});
  if (!blocked.empty()) {
    out.Line("");
    blocked.PrintTo(out);
  }
  out.Line("");
  std::vector<const v1::Lease*> leases;
  for (const v1::Lease& l : f.leases()) leases.push_back(&l);
  PrintLeaseTable(out, leases);
}

void PrintLayoutChange(Output& out, const v1::LayoutChangeResponse& r) {
  Table t({"policy:", ShortName(r.policy())});
  t.Add({"affected:", FormatRange(r.affected())});
  t.Add({"size:", absl::StrCat(r.size_before(), " -> ", r.size_after())});
  // Others' leases (of sessions the caller may not see) are counted, not named.
  auto ids = [](const auto& listed, uint32_t others) {
    if (others == 0) return Ids(listed);
    const std::string counted = absl::StrCat(others, " of other sessions");
    return listed.empty() ? counted : absl::StrCat(Ids(listed), " and ", counted);
  };
  t.Add({"recalled:", ids(r.recalled_lease_ids(), r.others_recalled())});
  t.Add({"released:", ids(r.released_lease_ids(), r.others_released())});
  t.Add({"expired:", ids(r.expired_lease_ids(), r.others_expired())});
  t.Add({"revoked:", ids(r.revoked_lease_ids(), r.others_revoked())});
  t.Add({"waited:", FormatDuration(r.waited())});
  t.PrintTo(out);
}

void PrintInfo(Output& out, const v1::GetInfoResponse& info) {
  Table t({"version:", info.version()});
  t.Add({"epoch:", info.epoch()});
  t.Add({"started:", FormatTimestamp(info.started_at())});
  t.Add({"backend:", info.backend()});
  if (!info.rdma_unavailable().empty()) {
    t.Add({"rdma:", absl::StrCat("not served: ", info.rdma_unavailable())});
  }
  t.Add({"page size:", absl::StrCat(info.page_size())});
  t.Add({"session ttl:", FormatDuration(info.session_ttl())});
  t.Add({"live leases:", absl::StrCat(info.live_leases())});
  t.Add({"pinned bytes:", absl::StrCat(info.pinned_bytes())});
  if (info.max_pinned_bytes_total() != 0) {
    t.Add({"pin budget:", absl::StrCat(info.max_pinned_bytes_total(), " bytes")});
  }
  if (info.max_vmas_total() != 0) {
    t.Add({"host VMAs:", absl::StrCat(info.vmas(), " of ", info.max_vmas_total())});
  }
  if (info.has_quota()) {
    const v1::QuotaUsage& q = info.quota();
    const auto of = [](uint64_t used, uint64_t limit) {
      return absl::StrCat(used, " of ",
                          limit == 0 ? std::string("unlimited") : absl::StrCat(limit));
    };
    t.Add({"quota of:", q.identity()});
    t.Add({"  sessions:", of(q.sessions(), q.max_sessions())});
    t.Add({"  leases:", of(q.leases(), q.max_leases())});
    t.Add({"  pinned bytes:", of(q.pinned_bytes(), q.max_pinned_bytes())});
    t.Add({"  watches:", of(q.watches(), q.max_watches())});
    t.Add({"  blocked calls:", of(q.blocked_calls(), q.max_blocked_calls())});
    if (info.max_vmas_total() != 0) t.Add({"  host VMAs:", of(q.vmas(), q.max_vmas())});
  }
  for (const v1::DeviceInfo& d : info.devices()) {
    t.Add({"device:", absl::StrCat(d.name(), d.odp() ? " (odp)" : "")});
  }
  t.PrintTo(out);
  out.Line("");
  Table exports({"EXPORT", "ROOT", "POLICY", "GRACE", "TIMEOUT", "DEFAULT TTL", "MAX TTL", "RO"});
  for (const v1::ExportInfo& e : info.exports()) {
    exports.Add({e.name(), e.root(), ShortName(e.default_policy()), FormatDuration(e.grace()),
                 FormatDuration(e.layout_timeout()), FormatDuration(e.default_ttl()),
                 FormatDuration(e.max_ttl()), Yes(e.read_only())});
  }
  exports.PrintTo(out);
}

}  // namespace pinctl
