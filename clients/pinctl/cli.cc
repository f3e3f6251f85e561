#include "clients/pinctl/cli.h"

#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pinctl {

bool Args::Has(absl::string_view flag) const { return values_.find(flag) != values_.end(); }

std::optional<std::string> Args::Get(absl::string_view flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<uint64_t> Args::Size(absl::string_view flag, uint64_t fallback) const {
  auto value = Get(flag);
  if (!value) return fallback;
  auto parsed = ParseSize(*value);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", parsed.status().message()));
  }
  return parsed;
}

absl::StatusOr<absl::Duration> Args::Duration(absl::string_view flag,
                                              absl::Duration fallback) const {
  auto value = Get(flag);
  if (!value) return fallback;
  auto parsed = ParseDuration(*value);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", parsed.status().message()));
  }
  return parsed;
}

namespace {

// "--name=value" -> ("name", "value"); "--name" -> ("name", nullopt); "-o" -> ("o", nullopt).
struct SplitFlag {
  std::string name;
  std::optional<std::string> value;
};

bool LooksLikeFlag(absl::string_view arg) { return arg.size() > 1 && arg[0] == '-'; }

SplitFlag Split(absl::string_view arg) {
  arg.remove_prefix(absl::StartsWith(arg, "--") ? 2 : 1);
  SplitFlag out;
  const size_t eq = arg.find('=');
  if (eq == absl::string_view::npos) {
    out.name = std::string(arg);
  } else {
    out.name = std::string(arg.substr(0, eq));
    out.value = std::string(arg.substr(eq + 1));
  }
  return out;
}

class Parser {
 public:
  Parser(int argc, const char* const* argv, const std::vector<CommandSyntax>& commands)
      : argc_(argc), argv_(argv), commands_(commands) {}

  absl::StatusOr<CommandLine> Run() {
    // Global options before the noun.
    while (i_ < argc_ && LooksLikeFlag(argv_[i_])) {
      const absl::string_view arg = argv_[i_++];
      if (arg == "--") break;
      SplitFlag flag = Split(arg);
      auto handled = TryGlobal(flag);
      if (!handled.ok()) return handled.status();
      if (!*handled) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown option '", arg,
                         "' (global options: --endpoint, -o, "
                         "--timeout, --session, --token, --tls-ca, --tls-cert, --tls-key, "
                         "--tls-server-name, --help, --version)"));
      }
    }
    if (i_ >= argc_) {
      if (!out_.global.help && !out_.global.version) {
        return absl::InvalidArgumentError("no command given");
      }
      return std::move(out_);
    }
    std::string noun = argv_[i_++];
    if (noun == "help") {
      out_.global.help = true;
      while (i_ < argc_ && out_.words.size() < 2 && !LooksLikeFlag(argv_[i_])) {
        out_.words.push_back(argv_[i_++]);
      }
      Lookup();
      return std::move(out_);
    }
    out_.words.push_back(noun);
    if (!NounExists(noun)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown command '", noun, "'"));
    }
    if (NounHasVerbs(noun)) {
      if (i_ < argc_ && !LooksLikeFlag(argv_[i_])) {
        out_.words.push_back(argv_[i_++]);
      }
    }
    Lookup();
    if (out_.command < 0) {
      // Still honour --help after a partial command ("pinctl lease --help").
      for (int j = i_; j < argc_; ++j) {
        const absl::string_view a = argv_[j];
        if (a == "-h" || a == "--help") {
          out_.global.help = true;
          return std::move(out_);
        }
      }
      if (out_.words.size() < 2) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", noun, "' needs a verb: ", absl::StrJoin(VerbsOf(noun), ", ")));
      }
      return absl::InvalidArgumentError(absl::StrCat("unknown command '", noun, " ", out_.words[1],
                                                     "'; '", noun, "' knows ",
                                                     absl::StrJoin(VerbsOf(noun), ", ")));
    }
    const std::vector<FlagSpec>& flags = commands_[out_.command].flags;
    bool only_positional = false;
    while (i_ < argc_) {
      const absl::string_view arg = argv_[i_++];
      if (only_positional || !LooksLikeFlag(arg)) {
        out_.args.AddPositional(std::string(arg));
        continue;
      }
      if (arg == "--") {
        only_positional = true;
        continue;
      }
      SplitFlag flag = Split(arg);
      const FlagSpec* spec = nullptr;
      for (const FlagSpec& f : flags) {
        if (flag.name == f.name) spec = &f;
      }
      if (spec == nullptr || flag.name.size() == 1) {
        auto handled = TryGlobal(flag);
        if (!handled.ok()) return handled.status();
        if (*handled) continue;
        return absl::InvalidArgumentError(
            absl::StrCat("'", absl::StrJoin(out_.words, " "), "' has no option '", arg, "'"));
      }
      if (!spec->takes_value) {
        if (flag.value.has_value()) {
          return absl::InvalidArgumentError(absl::StrCat("--", flag.name, " takes no value"));
        }
        out_.args.Set(flag.name, "true");
        continue;
      }
      auto value = Value(flag);
      if (!value.ok()) return value.status();
      out_.args.Set(flag.name, *value);
    }
    return std::move(out_);
  }

 private:
  absl::StatusOr<std::string> Value(const SplitFlag& flag) {
    if (flag.value.has_value()) return *flag.value;
    if (i_ >= argc_) {
      return absl::InvalidArgumentError(absl::StrCat("option '", flag.name, "' needs a value"));
    }
    return std::string(argv_[i_++]);
  }

  // True if `flag` is a global option (and records it).
  absl::StatusOr<bool> TryGlobal(const SplitFlag& flag) {
    const std::string& n = flag.name;
    if (n == "h" || n == "help") {
      out_.global.help = true;
      return true;
    }
    if (n == "version") {
      if (flag.value.has_value()) return absl::InvalidArgumentError("--version takes no value");
      out_.global.version = true;
      return true;
    }
    if (n != "endpoint" && n != "o" && n != "output" && n != "timeout" && n != "session" &&
        n != "token" && n != "tls-ca" && n != "tls-cert" && n != "tls-key" &&
        n != "tls-server-name") {
      return false;
    }
    auto value = Value(flag);
    if (!value.ok()) return value.status();
    if (n == "endpoint") {
      out_.global.endpoint = *value;
    } else if (n == "o" || n == "output") {
      if (*value == "json") {
        out_.global.output = OutputFormat::kJson;
      } else if (*value == "table") {
        out_.global.output = OutputFormat::kTable;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("-o must be 'table' or 'json', not '", *value, "'"));
      }
    } else if (n == "timeout") {
      auto d = ParseDuration(*value);
      if (!d.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("--timeout: ", d.status().message()));
      }
      if (*d <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError("--timeout must be positive");
      }
      out_.global.timeout = *d;
    } else if (n == "session") {
      out_.global.session = *value;
    } else if (n == "tls-ca") {
      out_.global.tls_ca = *value;
    } else if (n == "tls-cert") {
      out_.global.tls_cert = *value;
    } else if (n == "tls-key") {
      out_.global.tls_key = *value;
    } else if (n == "tls-server-name") {
      out_.global.tls_server_name = *value;
    } else {
      out_.global.token = *value;
    }
    return true;
  }

  bool NounExists(absl::string_view noun) const {
    for (const CommandSyntax& c : commands_) {
      if (c.noun == noun) return true;
    }
    return false;
  }
  bool NounHasVerbs(absl::string_view noun) const {
    for (const CommandSyntax& c : commands_) {
      if (c.noun == noun && !c.verb.empty()) return true;
    }
    return false;
  }
  std::vector<std::string> VerbsOf(absl::string_view noun) const {
    std::vector<std::string> verbs;
    for (const CommandSyntax& c : commands_) {
      if (c.noun == noun) verbs.push_back(c.verb);
    }
    return verbs;
  }
  void Lookup() {
    const std::string noun = out_.words.empty() ? "" : out_.words[0];
    const std::string verb = out_.words.size() > 1 ? out_.words[1] : "";
    for (size_t k = 0; k < commands_.size(); ++k) {
      if (commands_[k].noun == noun && commands_[k].verb == verb) {
        out_.command = static_cast<int>(k);
      }
    }
  }

  const int argc_;
  const char* const* const argv_;
  const std::vector<CommandSyntax>& commands_;
  int i_ = 1;
  CommandLine out_;
};

}  // namespace

absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv,
                                             const std::vector<CommandSyntax>& commands) {
  return Parser(argc, argv, commands).Run();
}

}  // namespace pinctl
