// A consumer of the installed C++ client library built with pkg-config
// (`pkg-config --cflags --libs pinbroker-client`): connects and prints the broker's GetInfo.
//
// Usage: info_consumer ENDPOINT
#include <cstdio>

#include "pinbroker/client.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s ENDPOINT\n", argv[0]);
    return 2;
  }
  auto client = pinbroker::client::Client::Connect(argv[1], {.client_name = "pkg-config-consumer"});
  if (!client.ok()) {
    std::fprintf(stderr, "Connect failed: %s\n", client.status().ToString().c_str());
    return 1;
  }
  auto info = (*client)->GetInfo();
  if (!info.ok()) {
    std::fprintf(stderr, "GetInfo failed: %s\n", info.status().ToString().c_str());
    return 1;
  }
  std::printf("broker %s backend %s exports %d\n", info->version().c_str(), info->backend().c_str(),
              info->exports_size());
  return 0;
}
