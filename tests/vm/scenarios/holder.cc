// `vm_scenarios hold`: a client process for scenario 7 to kill. It opens a session, attaches an
// RDMA connection from --source, pins each --range with RDMA (read-write), writes
// Pattern(--seed) into it, prints "READY session=<id> leases=<id>,<id>" and sleeps until killed.
//
//   vm_scenarios hold --endpoint unix:/x.sock --export tmpfs --path f.dat --source 10.77.0.2
//                     --seed 7 --range 0:8192 --range 16384:8192
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "pinbroker/client.h"
#include "pinbroker/rdma_connection.h"
#include "pinbroker/rdma_lease.h"
#include "tests/vm/scenarios/fixture.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {
namespace {

int Fail(const std::string& what) {
  std::printf("FAILED %s\n", what.c_str());
  std::fflush(stdout);
  return 1;
}

}  // namespace

int HoldMain(int argc, char** argv) {
  std::string endpoint, export_name, path, source;
  uint64_t seed = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--endpoint") {
      endpoint = value;
    } else if (flag == "--export") {
      export_name = value;
    } else if (flag == "--path") {
      path = value;
    } else if (flag == "--source") {
      source = value;
    } else if (flag == "--seed") {
      if (!absl::SimpleAtoi(value, &seed)) return Fail("bad --seed");
    } else if (flag == "--range") {
      std::vector<std::string> parts = absl::StrSplit(value, ':');
      uint64_t off = 0, len = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &off) ||
          !absl::SimpleAtoi(parts[1], &len)) {
        return Fail("bad --range (OFFSET:LENGTH)");
      }
      ranges.emplace_back(off, len);
    } else {
      return Fail(absl::StrCat("unknown flag ", flag));
    }
  }
  if (endpoint.empty() || export_name.empty() || path.empty() || ranges.empty()) {
    return Fail("--endpoint, --export, --path and --range are required");
  }
  Peer peer;
  peer.name = "s7-holder";
  client::ClientOptions options;
  options.client_name = "s7-holder";
  auto c = client::Client::Connect(endpoint, options);
  if (!c.ok()) return Fail(absl::StrCat("connect: ", StatusText(c.status())));
  peer.client = *std::move(c);
  client::RdmaConnectOptions r;
  r.source_address = source;
  auto conn = client::RdmaConnection::Connect(*peer.client, r);
  if (!conn.ok()) return Fail(absl::StrCat("RDMA connect: ", StatusText(conn.status())));
  peer.rdma = *std::move(conn);
  auto buffer = peer.rdma->AllocateBuffer(Peer::kBufferBytes);
  if (!buffer.ok()) return Fail(absl::StrCat("buffer: ", StatusText(buffer.status())));
  peer.buffer = *buffer;
  std::vector<std::unique_ptr<client::RdmaLease>> leases;
  std::vector<std::string> ids;
  for (const auto& [off, len] : ranges) {
    client::RdmaPinOptions pin;
    pin.export_name = export_name;
    pin.path = path;
    pin.offset = off;
    pin.length = len;
    pin.access = v1::ACCESS_READ_WRITE;
    pin.ttl = absl::Seconds(300);
    auto lease = client::RdmaLease::Pin(*peer.client, *peer.rdma, pin);
    if (!lease.ok()) return Fail(absl::StrCat("pin: ", StatusText(lease.status())));
    const absl::Status w = RdmaWrite(**lease, peer, 0, Pattern(seed, off, len));
    if (!w.ok()) return Fail(absl::StrCat("write: ", StatusText(w)));
    ids.push_back((*lease)->id());
    leases.push_back(*std::move(lease));
  }
  std::printf("READY session=%s leases=%s\n", peer.client->session_id().c_str(),
              absl::StrJoin(ids, ",").c_str());
  std::fflush(stdout);
  while (true) pause();  // Until SIGKILL.
}

}  // namespace pinbroker::scenarios
