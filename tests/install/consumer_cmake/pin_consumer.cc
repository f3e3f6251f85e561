// A consumer of the installed C++ client library: writes a file into an export, pins part of it,
// reads GetInfo, releases the lease and reads GetInfo again. Prints one line per step for the
// install test (tests/install/install_consumer_test.sh) to check.
//
// Usage: pin_consumer ENDPOINT EXPORT_NAME EXPORT_DIR
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "pinbroker/client.h"
#include "pinbroker/log_sink.h"
#include "pinbroker/v1/pinbroker.pb.h"

namespace {

int Fail(const char* step, const absl::Status& status) {
  std::fprintf(stderr, "%s failed: %s\n", step, status.ToString().c_str());
  return 1;
}

std::string Exports(const pinbroker::v1::GetInfoResponse& info) {
  std::string names;
  for (const auto& e : info.exports()) absl::StrAppend(&names, names.empty() ? "" : ",", e.name());
  return names;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s ENDPOINT EXPORT_NAME EXPORT_DIR\n", argv[0]);
    return 2;
  }
  const std::string endpoint = argv[1], export_name = argv[2], export_dir = argv[3];
  // The library's log lines go to the sink; this one keeps them, prefixed, on stderr.
  pinbroker::SetLogSink([](pinbroker::LogSeverity, absl::string_view line) {
    std::fprintf(stderr, "library: %.*s\n", static_cast<int>(line.size()), line.data());
  });

  constexpr size_t kFileSize = 20000;
  {
    std::ofstream out(export_dir + "/consumer.dat", std::ios::binary);
    out << std::string(kFileSize, 'p');
    if (!out.flush()) {
      std::fprintf(stderr, "cannot write %s/consumer.dat\n", export_dir.c_str());
      return 1;
    }
  }
  std::printf("wrote consumer.dat %zu bytes\n", kFileSize);

  auto client = pinbroker::client::Client::Connect(endpoint, {.client_name = "install-consumer"});
  if (!client.ok()) return Fail("Connect", client.status());
  std::printf("session open %s\n", (*client)->session_id().empty() ? "no" : "yes");

  pinbroker::client::PinOptions pin;
  pin.export_name = export_name;
  pin.path = "consumer.dat";
  pin.offset = 5000;
  pin.length = 8192;
  pin.access = pinbroker::v1::ACCESS_READ;
  auto lease = (*client)->Pin(pin);
  if (!lease.ok()) return Fail("Pin", lease.status());
  const pinbroker::client::ByteRange range = (*lease)->range();
  std::printf("pinned %s range %llu+%llu state %s\n", (*lease)->path().c_str(),
              static_cast<unsigned long long>(range.offset),
              static_cast<unsigned long long>(range.length),
              std::string(pinbroker::client::LeaseStateName((*lease)->state())).c_str());

  auto info = (*client)->GetInfo();
  if (!info.ok()) return Fail("GetInfo", info.status());
  std::printf("info version %s exports %s live_leases %llu\n", info->version().c_str(),
              Exports(*info).c_str(), static_cast<unsigned long long>(info->live_leases()));

  if (absl::Status s = (*lease)->Release(); !s.ok()) return Fail("Release", s);
  std::printf("released state %s\n",
              std::string(pinbroker::client::LeaseStateName((*lease)->state())).c_str());

  info = (*client)->GetInfo();
  if (!info.ok()) return Fail("GetInfo", info.status());
  std::printf("info after release live_leases %llu\n",
              static_cast<unsigned long long>(info->live_leases()));

  if (absl::Status s = (*client)->Close(); !s.ok()) return Fail("Close", s);
  std::printf("closed\n");
  return 0;
}
