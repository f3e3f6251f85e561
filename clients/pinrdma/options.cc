#include "clients/pinrdma/options.h"

#include <functional>
#include <map>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace pinrdma {
namespace {

namespace v1 = ::pinbroker::v1;

using Setter = std::function<absl::Status(Options&, const std::string& value)>;

struct Flag {
  bool takes_value;
  Setter set;
};

absl::Status Named(absl::string_view flag, const absl::Status& s) {
  if (s.ok()) return s;
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", s.message()));
}

Setter SizeInto(uint64_t Options::*field) {
  return [field](Options& o, const std::string& v) -> absl::Status {
    auto size = ParseSize(v);
    if (!size.ok()) return size.status();
    o.*field = *size;
    return absl::OkStatus();
  };
}

Setter DurationInto(absl::Duration Options::*field) {
  return [field](Options& o, const std::string& v) -> absl::Status {
    auto d = ParseDuration(v);
    if (!d.ok()) return d.status();
    o.*field = *d;
    return absl::OkStatus();
  };
}

Setter StringInto(std::string Options::*field) {
  return [field](Options& o, const std::string& v) -> absl::Status {
    if (v.empty()) return absl::InvalidArgumentError("empty value");
    o.*field = v;
    return absl::OkStatus();
  };
}

Setter Switch(bool Options::*field, bool value) {
  return [field, value](Options& o, const std::string&) -> absl::Status {
    o.*field = value;
    return absl::OkStatus();
  };
}

const std::map<std::string, Flag, std::less<>>& Flags() {
  static const auto* flags = new std::map<std::string, Flag, std::less<>>{
      {"help", {false, Switch(&Options::help, true)}},
      {"version", {false, Switch(&Options::version, true)}},
      {"output",
       {true,
        [](Options& o, const std::string& v) -> absl::Status {
          if (v == "json") {
            o.json = true;
          } else if (v == "table") {
            o.json = false;
          } else {
            return absl::InvalidArgumentError(absl::StrCat("'", v, "': use table or json"));
          }
          return absl::OkStatus();
        }}},
      {"endpoint", {true, StringInto(&Options::endpoint)}},
      {"broker", {true, StringInto(&Options::endpoint)}},
      {"timeout", {true, DurationInto(&Options::timeout)}},
      {"name", {true, StringInto(&Options::client_name)}},
      {"rdma-address", {true, StringInto(&Options::rdma_address)}},
      {"rdma-port",
       {true,
        [](Options& o, const std::string& v) -> absl::Status {
          uint32_t port = 0;
          if (!absl::SimpleAtoi(v, &port) || port == 0 || port > 65535) {
            return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not a port"));
          }
          o.rdma_port = static_cast<uint16_t>(port);
          return absl::OkStatus();
        }}},
      {"broker-device", {true, StringInto(&Options::broker_device)}},
      {"source-address", {true, StringInto(&Options::source_address)}},
      {"connect-timeout", {true, DurationInto(&Options::connect_timeout)}},
      {"op-timeout", {true, DurationInto(&Options::op_timeout)}},
      {"export", {true, StringInto(&Options::export_name)}},
      {"path", {true, StringInto(&Options::path)}},
      {"offset", {true, SizeInto(&Options::offset)}},
      {"length", {true, SizeInto(&Options::length)}},
      {"access",
       {true,
        [](Options& o, const std::string& v) -> absl::Status {
          if (v == "read" || v == "r" || v == "ro") {
            o.access = v1::ACCESS_READ;
          } else if (v == "read-write" || v == "rw" || v == "write") {
            o.access = v1::ACCESS_READ_WRITE;
          } else {
            return absl::InvalidArgumentError(absl::StrCat("'", v, "': use read or read-write"));
          }
          o.access_given = true;
          return absl::OkStatus();
        }}},
      {"ttl", {true, DurationInto(&Options::ttl)}},
      {"lease-offset", {true, SizeInto(&Options::lease_offset)}},
      {"io-length", {true, SizeInto(&Options::io_length)}},
      {"pattern",
       {true,
        [](Options& o, const std::string& v) -> absl::Status {
          if (!absl::SimpleAtoi(v, &o.pattern)) {
            return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not a number"));
          }
          o.pattern_given = true;
          return absl::OkStatus();
        }}},
      {"chunk", {true, SizeInto(&Options::chunk)}},
      {"depth",
       {true,
        [](Options& o, const std::string& v) -> absl::Status {
          if (!absl::SimpleAtoi(v, &o.depth) || o.depth == 0 || o.depth > 64) {
            return absl::InvalidArgumentError(absl::StrCat("'", v, "': use 1 to 64"));
          }
          return absl::OkStatus();
        }}},
      {"no-restore", {false, Switch(&Options::restore, false)}},
      {"no-atomics", {false, Switch(&Options::atomics, false)}},
      {"ignore-recall", {false, Switch(&Options::ignore_recall, true)}},
      {"write-interval", {true, DurationInto(&Options::write_interval)}},
      {"max-time", {true, DurationInto(&Options::max_time)}},
  };
  return *flags;
}

bool ParseCommand(absl::string_view word, Command* out) {
  static const auto* commands = new std::map<std::string, Command, std::less<>>{
      {"check", Command::kCheck}, {"write", Command::kWrite}, {"read", Command::kRead},
      {"hold", Command::kHold},   {"info", Command::kInfo},   {"help", Command::kHelp}};
  auto it = commands->find(word);
  if (it == commands->end()) return false;
  *out = it->second;
  return true;
}

absl::Status Validate(Options& o, const std::vector<std::string>& positional) {
  const bool pins = o.command != Command::kInfo;
  if (!pins) {
    if (!positional.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("info takes no arguments, got '", positional[0], "'"));
    }
    return absl::OkStatus();
  }
  if (positional.size() > 2) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", positional[2],
                                                   "' (usage: pinrdma ", CommandName(o.command),
                                                   " EXPORT PATH --length N ...)"));
  }
  if (positional.size() >= 1) {
    if (!o.export_name.empty()) {
      return absl::InvalidArgumentError("EXPORT given both as an argument and with --export");
    }
    o.export_name = positional[0];
  }
  if (positional.size() == 2) {
    if (!o.path.empty()) {
      return absl::InvalidArgumentError("PATH given both as an argument and with --path");
    }
    o.path = positional[1];
  }
  if (o.export_name.empty() || o.path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(CommandName(o.command), " needs EXPORT and PATH (or --export and --path)"));
  }
  if (o.length == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(CommandName(o.command), " needs --length (the bytes to pin)"));
  }
  if (o.offset > UINT64_MAX - o.length) {
    return absl::InvalidArgumentError("--offset plus --length overflows");
  }
  const bool writes =
      o.command == Command::kCheck || o.command == Command::kWrite || o.command == Command::kHold;
  if (writes && o.access == v1::ACCESS_READ) {
    if (o.command != Command::kHold || o.write_interval > absl::ZeroDuration() || o.ignore_recall) {
      return absl::InvalidArgumentError(absl::StrCat(
          CommandName(o.command), " writes: it needs --access read-write (the default)"));
    }
  }
  if (o.command == Command::kRead && !o.access_given) o.access = v1::ACCESS_READ;
  if (o.command != Command::kHold && (o.ignore_recall || o.write_interval > absl::ZeroDuration() ||
                                      o.max_time > absl::ZeroDuration())) {
    return absl::InvalidArgumentError(
        "--ignore-recall, --write-interval and --max-time are for pinrdma hold");
  }
  if (o.command != Command::kCheck && (!o.restore || !o.atomics)) {
    return absl::InvalidArgumentError("--no-restore and --no-atomics are for pinrdma check");
  }
  if (o.command == Command::kHold && o.ignore_recall && o.write_interval == absl::ZeroDuration()) {
    o.write_interval = absl::Seconds(1);
  }
  if (o.timeout <= absl::ZeroDuration() || o.op_timeout <= absl::ZeroDuration() ||
      o.connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--timeout, --op-timeout and --connect-timeout must be > 0");
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view CommandName(Command c) {
  switch (c) {
    case Command::kHelp:
      return "help";
    case Command::kCheck:
      return "check";
    case Command::kWrite:
      return "write";
    case Command::kRead:
      return "read";
    case Command::kHold:
      return "hold";
    case Command::kInfo:
      return "info";
  }
  return "?";
}

absl::StatusOr<Options> ParseOptions(int argc, const char* const* argv) {
  Options o;
  bool have_command = false;
  bool options_ended = false;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (!options_ended && arg == "--") {
      options_ended = true;
      continue;
    }
    const bool is_flag = !options_ended && arg.size() > 1 && arg[0] == '-';
    if (!is_flag) {
      if (!have_command) {
        if (!ParseCommand(arg, &o.command)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "unknown command '", arg, "'; commands: check, write, read, hold, info"));
        }
        have_command = true;
        if (o.command == Command::kHelp) o.help = true;
      } else {
        positional.push_back(std::move(arg));
      }
      continue;
    }
    std::string name;
    std::optional<std::string> value;
    if (arg == "-h") {
      name = "help";
    } else if (arg == "-o") {
      name = "output";
    } else if (absl::StartsWith(arg, "--")) {
      name = arg.substr(2);
      if (const size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", arg, "'"));
    }
    auto it = Flags().find(name);
    if (it == Flags().end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '--", name, "'"));
    }
    if (it->second.takes_value) {
      if (!value.has_value()) {
        if (i + 1 >= argc) {
          return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
        }
        value = argv[++i];
      }
    } else if (value.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
    }
    if (absl::Status s = Named(name, it->second.set(o, value.value_or(""))); !s.ok()) return s;
  }
  if (o.help || o.version) return o;
  if (!have_command) {
    return absl::InvalidArgumentError("no command; commands: check, write, read, hold, info");
  }
  if (absl::Status s = Validate(o, positional); !s.ok()) return s;
  return o;
}

std::string HelpText() {
  return R"(pinrdma: RDMA through pinbrokerd leases. Pins a file range with RDMA access on a
session of its own, attaches an RDMA connection to that session, and moves bytes with RDMA
WRITE/READ (and atomics) through the lease's memory window.

Usage: pinrdma [OPTIONS] COMMAND [EXPORT PATH] [OPTIONS]

Commands:
  check EXPORT PATH --length N   pin, save the bytes, write a pattern, read it back and
                                 verify it, try FETCH_AND_ADD and COMPARE_SWAP, restore the
                                 bytes, release; prints bytes and throughput
  write EXPORT PATH --length N   pin and write the --pattern into [--lease-offset,
                                 +--io-length) of the lease, then release
  read EXPORT PATH --length N    pin (read-only unless --access), read [--lease-offset,
                                 +--io-length); verify against --pattern if given, else
                                 print a checksum
  hold EXPORT PATH --length N    pin and hold, one JSON line per event (-o json). On recall:
                                 drain, release, exit 0. --ignore-recall: keep holding and
                                 writing every --write-interval (default 1s) until revoked,
                                 then probe the dead window once and exit 4
  info                           the broker's RDMA devices and endpoints (or why it serves
                                 no RDMA), and the local devices (or why there are none)
  --version                      the version, git commit and build type

Broker:
  --endpoint ADDR (--broker)     gRPC target: unix:/path.sock, /path.sock or host:port.
                                 Default: $PINBROKER_ENDPOINT, else pinbrokerd's default socket
  --timeout D                    per-RPC deadline (default 30s)
  --name NAME                    session client name (default pinrdma)
  -o table|json                  output (json: one object per line, errors included)
RDMA connection:
  --rdma-address IP              the broker's RDMA address (default: from GetInfo)
  --rdma-port N                  its port (default: from GetInfo, else 7471)
  --broker-device DEV            use the broker's endpoint on this device
  --source-address IP            local address to bind: picks the local RDMA device
  --connect-timeout D            (default 10s)
  --op-timeout D                 completion wait of one operation (default 30s)
Pin:
  --export NAME --path PATH      instead of the EXPORT PATH arguments
  --offset N --length N          the file range to pin (whole pages are pinned)
  --access read|read-write       (default read-write; read for the read command)
  --ttl D                        lease TTL (default: the export's)
Transfers:
  --lease-offset N --io-length N the bytes of the lease to move (default: all of it)
  --pattern SEED                 the byte pattern's seed (default 1); it depends on the file
                                 offset, so a read with the same seed verifies a write
  --chunk N --depth N            bytes per operation (default: the lease's max_transfer_size,
                                 else 1M) and operations in flight (default 4)
  --no-restore --no-atomics      check: leave the pattern in the file; skip atomics
hold:
  --ignore-recall --write-interval D --max-time D

Sizes: bytes or with K, M, G, T. Durations: 500ms, 2s, 1m30s or seconds.

Exit status: 0 ok; 1 local failure; 2 usage; 4 hold: the lease was revoked or expired;
10 + N: failed with status code N (13 INVALID_ARGUMENT, 15 NOT_FOUND, 17 PERMISSION_DENIED,
19 FAILED_PRECONDITION, 24 UNAVAILABLE, 25 DATA_LOSS: verification failed, ...).
)";
}

}  // namespace pinrdma
