#include "broker/peer_identity.h"

#include <grp.h>
#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>
#include <grpcpp/server_context.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace pinbroker::broker {
namespace {

// The peer's supplementary groups as the kernel had them at connect (SO_PEERGROUPS, Linux
// 4.13); where that is not available, the groups the user database gives its uid.
std::vector<gid_t> UserGroups(uid_t uid, gid_t gid);

std::vector<gid_t> PeerGroups(int fd, uid_t uid, gid_t gid) {
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 4; ++attempt) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      return groups;
    }
    if (errno != ERANGE) break;
    groups.resize(len / sizeof(gid_t) + 1);
  }
  return UserGroups(uid, gid);
}

std::vector<gid_t> UserGroups(uid_t uid, gid_t gid) {
  std::vector<gid_t> listed;
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(size > 0 ? static_cast<size_t>(size) : 16384);
  passwd pw;
  passwd* found = nullptr;
  if (getpwuid_r(uid, &pw, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return {gid};
  }
  int n = 64;
  listed.resize(n);
  if (getgrouplist(pw.pw_name, gid, listed.data(), &n) < 0) {
    listed.resize(n);
    if (getgrouplist(pw.pw_name, gid, listed.data(), &n) < 0) return {gid};
  }
  listed.resize(n);
  return listed;
}

std::string CommandOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/comm"));
  std::string comm;
  std::getline(in, comm);
  return SafeText(comm, 32);
}

}  // namespace

std::string SafeText(absl::string_view text, size_t max) {
  const bool cut = text.size() > max;
  if (cut) text = text.substr(0, max);
  std::string out = absl::CHexEscape(text);
  if (cut) out += "...";
  return out;
}

std::string PeerIdentity::Key() const {
  switch (kind) {
    case Kind::kUnix:
      return absl::StrCat("uid:", unix.uid);
    case Kind::kTls:
      return absl::StrCat("tls:", principal);
    case Kind::kAnonymous:
      break;
  }
  return "anonymous";
}

std::string PeerIdentity::Label() const {
  switch (kind) {
    case Kind::kUnix:
      return absl::StrCat("uid ", unix.uid);
    case Kind::kTls:
      return absl::StrCat("tls ", principal);
    case Kind::kAnonymous:
      break;
  }
  return "anonymous";
}

std::string PeerIdentity::Describe() const {
  switch (kind) {
    case Kind::kUnix:
      return absl::StrCat("uid ", unix.uid, " (pid ", pid, " ", command, ")");
    case Kind::kTls:
      return absl::StrCat("tls ", principal);
    case Kind::kAnonymous:
      break;
  }
  return absl::StrCat("anonymous (", SafeText(peer, 64), ")");
}

absl::StatusOr<PeerIdentity> UnixPeerOf(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoToStatus(errno, "getsockopt(SO_PEERCRED)");
  }
  PeerIdentity id;
  id.kind = PeerIdentity::Kind::kUnix;
  id.unix.uid = cred.uid;
  id.unix.gid = cred.gid;
  id.unix.groups = PeerGroups(fd, cred.uid, cred.gid);
  id.pid = cred.pid;
  id.command = CommandOf(cred.pid);
  return id;
}

UnixCredentials CredentialsOfUser(uid_t uid) {
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(size > 0 ? static_cast<size_t>(size) : 16384);
  passwd pw;
  passwd* found = nullptr;
  UnixCredentials out = NobodyCredentials();
  out.uid = uid;
  if (getpwuid_r(uid, &pw, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    out.gid = pw.pw_gid;
    out.groups = UserGroups(uid, pw.pw_gid);
  }
  return out;
}

void PeerRegistry::MapPrincipals(absl::flat_hash_map<std::string, uid_t> principal_uids) {
  absl::flat_hash_map<std::string, UnixCredentials> mapped;
  for (const auto& [principal, uid] : principal_uids) mapped[principal] = CredentialsOfUser(uid);
  absl::MutexLock lock(&mu_);
  principals_ = std::move(mapped);
}

void PeerRegistry::Register(int fd, PeerIdentity identity) {
  identity.peer = absl::StrCat("fd:", fd);
  absl::MutexLock lock(&mu_);
  by_fd_[fd] = std::move(identity);
}

PeerIdentity PeerRegistry::Identify(const grpc::ServerContextBase& context) const {
  const std::string peer = context.peer();
  int fd = -1;
  if (absl::StartsWith(peer, "fd:") && absl::SimpleAtoi(peer.substr(3), &fd)) {
    absl::MutexLock lock(&mu_);
    auto it = by_fd_.find(fd);
    if (it != by_fd_.end()) return it->second;
  }
  PeerIdentity id;
  id.peer = peer;
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    std::string principal;
    // A URI SAN first (SPIFFE-style names), else the subject CN.
    for (const grpc::string_ref& uri : auth->FindPropertyValues(GRPC_PEER_URI_PROPERTY_NAME)) {
      principal.assign(uri.data(), uri.size());
      break;
    }
    if (principal.empty()) {
      for (const grpc::string_ref& cn : auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) {
        principal.assign(cn.data(), cn.size());
        break;
      }
    }
    if (!principal.empty()) {
      id.kind = PeerIdentity::Kind::kTls;
      absl::MutexLock lock(&mu_);
      if (auto it = principals_.find(principal); it != principals_.end()) id.unix = it->second;
      id.principal = SafeText(principal, 256);
    }
  }
  return id;
}

}  // namespace pinbroker::broker
