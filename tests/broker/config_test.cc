#include "broker/config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::broker {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::pinbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(ConfigTest, ParsesTheTextFormat) {
  ASSERT_OK_AND_ASSIGN(v1::BrokerConfig config, ParseConfig(R"pb(
                         listen: "unix:/run/x.sock"
                         exports {
                           name: "pmem"
                           root: "/mnt/pmem"
                           default_policy: LAYOUT_POLICY_DEFER
                           grace { seconds: 3 }
                           read_only: true
                         }
                         session_ttl { seconds: 10 }
                       )pb"));
  ASSERT_EQ(config.exports_size(), 1);
  ASSERT_OK_AND_ASSIGN(auto exports, ExportsFromConfig(config));
  EXPECT_EQ(exports[0].name, "pmem");
  EXPECT_EQ(exports[0].default_policy, LayoutPolicy::kDefer);
  EXPECT_EQ(exports[0].grace, absl::Seconds(3));
  EXPECT_EQ(exports[0].default_ttl, absl::Seconds(60));  // Default kept.
  EXPECT_TRUE(exports[0].read_only);
}

// The annotated example in deploy/ must stay a valid configuration.
TEST(ConfigTest, DeployExampleParses) {
  ASSERT_OK_AND_ASSIGN(v1::BrokerConfig config,
                       LoadConfigFile(PINBROKER_SOURCE_DIR "/deploy/pinbrokerd.textproto"));
  EXPECT_EQ(config.exports_size(), 2);
  EXPECT_EQ(config.exports(1).default_policy(), v1::LAYOUT_POLICY_DEFER);
}

TEST(ConfigTest, SyntaxErrorsNameTheLine) {
  EXPECT_THAT(ParseConfig("listen: \"a\"\nexports { nam: \"x\" }").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2")));
}

TEST(ConfigTest, MissingFileIsNotFound) {
  EXPECT_THAT(LoadConfigFile("/nonexistent/pinbroker.textproto").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent")));
}

TEST(ConfigTest, EmbeddedDefaultHasOneCreatedExportAndASocket) {
  TempDir dir;
  const v1::BrokerConfig config = EmbeddedDefault(dir.Join("state"), dir.Join("run"));
  ASSERT_EQ(config.listen_size(), 1);
  EXPECT_EQ(config.listen(0), "unix:" + dir.Join("run") + "/pinbroker.sock");
  ASSERT_OK_AND_ASSIGN(auto exports, ExportsFromConfig(config));
  ASSERT_EQ(exports.size(), 1u);
  EXPECT_EQ(exports[0].name, "default");
  struct stat st;
  EXPECT_EQ(stat(exports[0].root.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST(ConfigTest, PrepareListenAddressMakesTheDirectoryAndRefusesNonSockets) {
  TempDir dir;
  EXPECT_OK(PrepareListenAddress("unix:" + dir.Join("a/b/s.sock")));
  struct stat st;
  EXPECT_EQ(stat(dir.Join("a/b").c_str(), &st), 0);
  dir.WriteFile("file", "x");
  EXPECT_THAT(PrepareListenAddress("unix:" + dir.Join("file")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a socket")));
  EXPECT_THAT(PrepareListenAddress("unix:/" + std::string(120, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit")));
  EXPECT_OK(PrepareListenAddress("127.0.0.1:0"));
}

TEST(ConfigTest, PrepareListenAddressRefusesASocketSomeoneServes) {
  TempDir dir("/tmp");
  const std::string path = dir.Join("live.sock");
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  EXPECT_THAT(PrepareListenAddress("unix:" + path),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already serving")));
  close(fd);
  EXPECT_OK(PrepareListenAddress("unix:" + path));  // Now stale: replaced.
}

TEST(ConfigTest, BadExportPolicyNamesTheExport) {
  v1::BrokerConfig config;
  v1::ExportConfig* e = config.add_exports();
  e->set_name("x");
  e->set_root("/tmp");
  e->set_default_policy(static_cast<v1::LayoutPolicy>(9));
  EXPECT_THAT(ExportsFromConfig(config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("export 'x'")));
}

TEST(ConfigTest, LayoutCapsDefaultAndMustCoverTheExportsOwnValues) {
  v1::BrokerConfig config;
  v1::ExportConfig* e = config.add_exports();
  e->set_name("x");
  e->set_root("/tmp");
  ASSERT_OK_AND_ASSIGN(auto caps, LayoutCapsFromConfig(config));
  EXPECT_EQ(caps["x"].max_grace, kDefaultMaxGrace);
  EXPECT_EQ(caps["x"].max_layout_timeout, kDefaultMaxLayoutTimeout);
  e->mutable_max_grace()->set_seconds(2);  // Below the default grace (5 s).
  EXPECT_THAT(LayoutCapsFromConfig(config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'x'"), HasSubstr("max_grace"))));
  e->mutable_max_grace()->set_seconds(60);
  e->mutable_max_layout_timeout()->set_seconds(120);
  ASSERT_OK_AND_ASSIGN(caps, LayoutCapsFromConfig(config));
  EXPECT_EQ(caps["x"].max_grace, absl::Seconds(60));
  EXPECT_EQ(caps["x"].max_layout_timeout, absl::Seconds(120));
  e->mutable_max_layout_timeout()->set_seconds(0);
  EXPECT_THAT(LayoutCapsFromConfig(config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_layout_timeout")));
}

TEST(ConfigTest, GuardIsOnByDefaultAndEachPartCanBeTurnedOff) {
  v1::BrokerConfig config;
  ASSERT_OK_AND_ASSIGN(auto options, GuardOptionsFromConfig(config));
  ASSERT_TRUE(options.has_value());
  EXPECT_TRUE(options->use_fanotify);
  EXPECT_TRUE(options->use_leases);
  EXPECT_EQ(options->check_interval, absl::Seconds(1));

  config.mutable_guard()->set_no_fanotify(true);
  config.mutable_guard()->set_no_file_leases(true);
  config.mutable_guard()->mutable_check_interval()->set_seconds(7);
  ASSERT_OK_AND_ASSIGN(options, GuardOptionsFromConfig(config));
  ASSERT_TRUE(options.has_value());
  EXPECT_FALSE(options->use_fanotify);
  EXPECT_FALSE(options->use_leases);
  EXPECT_EQ(options->check_interval, absl::Seconds(7));

  config.mutable_guard()->set_disabled(true);
  ASSERT_OK_AND_ASSIGN(options, GuardOptionsFromConfig(config));
  EXPECT_FALSE(options.has_value());
}

TEST(ConfigTest, GuardCheckIntervalMustBePositive) {
  v1::BrokerConfig config;
  config.mutable_guard()->mutable_check_interval()->set_seconds(0);
  EXPECT_THAT(GuardOptionsFromConfig(config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("guard.check_interval")));
}

TEST(ConfigTest, PrivateDirMustBeOwnNotSharedAndNotASymlink) {
  TempDir tmp;
  const std::string dir = tmp.Join("rt");
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  EXPECT_OK(CheckPrivateDir(dir));
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  EXPECT_THAT(CheckPrivateDir(dir),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("has mode 0755")));
  ASSERT_EQ(chmod(dir.c_str(), 0700), 0);
  const std::string link = tmp.Join("link");
  ASSERT_EQ(symlink(dir.c_str(), link.c_str()), 0);
  EXPECT_THAT(CheckPrivateDir(link),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is a symlink")));
  if (geteuid() == 0) {
    ASSERT_EQ(chown(dir.c_str(), 61001, 61001), 0);
    EXPECT_THAT(CheckPrivateDir(dir),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("belongs to uid 61001")));
  }
}

TEST(ConfigTest, ListenModeAndGroupAreParsed) {
  v1::BrokerConfig config;
  auto options = UnixListenOptionsFor("unix:/x/s.sock", config);
  ASSERT_OK(options.status());
  EXPECT_EQ(options->path, "/x/s.sock");
  EXPECT_EQ(options->mode, 0600u);
  config.set_listen_group("0");
  config.set_listen_mode("0660");
  options = UnixListenOptionsFor("unix:/x/s.sock", config);
  ASSERT_OK(options.status());
  EXPECT_EQ(options->mode, 0660u);
  EXPECT_EQ(options->group, 0u);
  config.set_listen_mode("rw-rw----");
  EXPECT_THAT(UnixListenOptionsFor("unix:/x/s.sock", config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("octal")));
  config.set_listen_mode("");
  config.set_listen_group("no-such-group-pb");
  EXPECT_THAT(UnixListenOptionsFor("unix:/x/s.sock", config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a group")));
}

TEST(ConfigTest, QuotasTakeDefaultsOverridesAndPerExportLimits) {
  auto config = ParseConfig(R"pb(
    quotas { max_sessions: 8 max_watches: 2 }
    max_pinned_bytes_total: 1000
    exports {
      name: "a"
      root: "/tmp"
      quotas { max_leases: 3 max_pinned_bytes: 100 }
    }
    exports { name: "b" root: "/tmp" }
  )pb");
  ASSERT_TRUE(config.ok()) << config.status();
  auto budget = PinnedBytesBudgetFromConfig(*config);
  ASSERT_TRUE(budget.ok());
  EXPECT_EQ(*budget, 1000u);
  auto quotas = QuotaOptionsFromConfig(*config, *budget);
  ASSERT_TRUE(quotas.ok()) << quotas.status();
  EXPECT_EQ(quotas->per_identity.max_sessions, 8u);
  EXPECT_EQ(quotas->per_identity.max_watches, 2u);
  EXPECT_EQ(quotas->per_identity.max_leases, kDefaultMaxLeases);
  EXPECT_EQ(quotas->per_identity.max_blocked_calls, kDefaultMaxBlockedCalls);
  EXPECT_EQ(quotas->per_identity.max_pinned_bytes, 500u);  // Half the budget.
  ASSERT_TRUE(quotas->per_export.contains("a"));
  EXPECT_EQ(quotas->per_export.at("a").max_leases, 3u);
  EXPECT_EQ(quotas->per_export.at("a").max_pinned_bytes, 100u);
  EXPECT_FALSE(quotas->per_export.contains("b"));
}

TEST(ConfigTest, QuotaValuesAreChecked) {
  auto zero = ParseConfig("quotas { max_leases: 0 }");
  ASSERT_TRUE(zero.ok());
  EXPECT_THAT(QuotaOptionsFromConfig(*zero, 1000).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("quotas.max_leases")));
  auto per_export = ParseConfig(R"pb(exports {
                                       name: "a"
                                       quotas { max_sessions: 1 }
                                     })pb");
  ASSERT_TRUE(per_export.ok());
  EXPECT_THAT(QuotaOptionsFromConfig(*per_export, 1000).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("export 'a'")));
  auto no_budget = ParseConfig("max_pinned_bytes_total: 0");
  ASSERT_TRUE(no_budget.ok());
  EXPECT_THAT(PinnedBytesBudgetFromConfig(*no_budget).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_pinned_bytes_total")));
  // Unset: derived from the machine, never zero.
  EXPECT_GT(*PinnedBytesBudgetFromConfig(v1::BrokerConfig()), 0u);
}

TEST(ConfigTest, HostVmaLimitsTakeDefaultsAndOverrides) {
  auto defaults = HostOptionsFromConfig(v1::BrokerConfig());
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->max_vmas, HostBackend::DefaultMaxVmas());
  EXPECT_EQ(defaults->max_vmas_per_holder, HostBackend::DefaultMaxVmas() / kDefaultVmaShare);
  auto total = ParseConfig("max_vmas_total: 1000");
  ASSERT_TRUE(total.ok());
  auto halved = HostOptionsFromConfig(*total);
  ASSERT_TRUE(halved.ok()) << halved.status();
  EXPECT_EQ(halved->max_vmas, 1000u);
  EXPECT_EQ(halved->max_vmas_per_holder, 500u);  // Half the total.
  auto both = ParseConfig("max_vmas_total: 1000 quotas { max_vmas: 300 }");
  ASSERT_TRUE(both.ok());
  auto set = HostOptionsFromConfig(*both);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->max_vmas_per_holder, 300u);

  auto zero_total = ParseConfig("max_vmas_total: 0");
  ASSERT_TRUE(zero_total.ok());
  EXPECT_THAT(HostOptionsFromConfig(*zero_total).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_vmas_total")));
  auto zero_share = ParseConfig("quotas { max_vmas: 0 }");
  ASSERT_TRUE(zero_share.ok());
  EXPECT_THAT(HostOptionsFromConfig(*zero_share).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("quotas.max_vmas")));
  auto per_export = ParseConfig(R"pb(exports {
                                       name: "a"
                                       quotas { max_vmas: 1 }
                                     })pb");
  ASSERT_TRUE(per_export.ok());
  EXPECT_THAT(QuotaOptionsFromConfig(*per_export, 1000).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("export 'a'"), HasSubstr("max_vmas"))));
}

}  // namespace
}  // namespace pinbroker::broker
