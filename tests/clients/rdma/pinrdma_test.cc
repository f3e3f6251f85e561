// Tests of pinrdma's parts that need no device: the command line (clients/pinrdma/options.h),
// the byte pattern (pattern.h), chunk selection (transfer.h) and the output format (output.h).

#include <cstring>
#include <string>
#include <vector>

#include "clients/pinrdma/options.h"
#include "clients/pinrdma/output.h"
#include "clients/pinrdma/pattern.h"
#include "clients/pinrdma/transfer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace pinrdma {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<Options> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "pinrdma");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return ParseOptions(static_cast<int>(argv.size()), argv.data());
}

TEST(PinrdmaOptionsTest, CheckWithPositionalsAndFlagsAnywhere) {
  ASSERT_OK_AND_ASSIGN(
      Options o, Parse({"-o", "json", "check", "default", "data/f.bin", "--length=1M", "--offset",
                        "8K", "--source-address", "10.77.0.2", "--rdma-port=7471", "--pattern",
                        "42", "--broker", "unix:/tmp/pb.sock", "--depth", "8"}));
  EXPECT_EQ(o.command, Command::kCheck);
  EXPECT_TRUE(o.json);
  EXPECT_EQ(o.export_name, "default");
  EXPECT_EQ(o.path, "data/f.bin");
  EXPECT_EQ(o.length, 1u << 20);
  EXPECT_EQ(o.offset, 8u << 10);
  EXPECT_EQ(o.source_address, "10.77.0.2");
  EXPECT_EQ(o.rdma_port, 7471);
  EXPECT_EQ(o.pattern, 42u);
  EXPECT_TRUE(o.pattern_given);
  EXPECT_EQ(o.endpoint, "unix:/tmp/pb.sock");
  EXPECT_EQ(o.depth, 8u);
  EXPECT_EQ(o.access, pinbroker::v1::ACCESS_READ_WRITE);
  EXPECT_TRUE(o.restore);
  EXPECT_TRUE(o.atomics);
}

TEST(PinrdmaOptionsTest, ExportAndPathByFlag) {
  ASSERT_OK_AND_ASSIGN(Options o, Parse({"write", "--export", "e", "--path", "p", "--length",
                                         "4096", "--lease-offset", "4096", "--io-length", "8K"}));
  EXPECT_EQ(o.command, Command::kWrite);
  EXPECT_EQ(o.export_name, "e");
  EXPECT_EQ(o.path, "p");
  EXPECT_EQ(o.lease_offset, 4096u);
  EXPECT_EQ(o.io_length, 8192u);
  EXPECT_THAT(Parse({"write", "e", "p", "--export", "x", "--length", "1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("both")));
}

TEST(PinrdmaOptionsTest, ReadDefaultsToReadAccessUnlessAsked) {
  ASSERT_OK_AND_ASSIGN(Options o, Parse({"read", "e", "p", "--length", "4K"}));
  EXPECT_EQ(o.access, pinbroker::v1::ACCESS_READ);
  EXPECT_FALSE(o.pattern_given);
  ASSERT_OK_AND_ASSIGN(o, Parse({"read", "e", "p", "--length", "4K", "--access", "rw"}));
  EXPECT_EQ(o.access, pinbroker::v1::ACCESS_READ_WRITE);
}

TEST(PinrdmaOptionsTest, HoldIgnoringRecallWritesEverySecondByDefault) {
  ASSERT_OK_AND_ASSIGN(Options o, Parse({"hold", "e", "p", "--length", "4K", "--ignore-recall"}));
  EXPECT_TRUE(o.ignore_recall);
  EXPECT_EQ(o.write_interval, absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(o, Parse({"hold", "e", "p", "--length", "4K", "--write-interval", "250ms",
                                 "--max-time", "1m"}));
  EXPECT_FALSE(o.ignore_recall);
  EXPECT_EQ(o.write_interval, absl::Milliseconds(250));
  EXPECT_EQ(o.max_time, absl::Minutes(1));
  // A read-only hold may not write.
  EXPECT_OK(Parse({"hold", "e", "p", "--length", "4K", "--access", "read"}).status());
  EXPECT_THAT(Parse({"hold", "e", "p", "--length", "4K", "--access", "read", "--ignore-recall"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("read-write")));
}

TEST(PinrdmaOptionsTest, UsageErrorsSayWhatIsWrong) {
  EXPECT_THAT(Parse({}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no command")));
  EXPECT_THAT(Parse({"frobnicate"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown command")));
  EXPECT_THAT(Parse({"check", "e", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs --length")));
  EXPECT_THAT(Parse({"check", "e", "--length", "1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("EXPORT and PATH")));
  EXPECT_THAT(Parse({"check", "e", "p", "x", "--length", "1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unexpected argument 'x'")));
  EXPECT_THAT(Parse({"check", "e", "p", "--length"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--length needs a value")));
  EXPECT_THAT(Parse({"check", "e", "p", "--length", "12Q"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--length: '12Q'")));
  EXPECT_THAT(Parse({"check", "e", "p", "--length", "1", "--bogus"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown option '--bogus'")));
  EXPECT_THAT(Parse({"check", "e", "p", "--length", "1", "--rdma-port", "70000"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a port")));
  EXPECT_THAT(Parse({"check", "e", "p", "--length", "1", "--access", "all"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--access")));
  EXPECT_THAT(Parse({"check", "e", "p", "--length", "1", "--access", "read"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("read-write")));
  EXPECT_THAT(Parse({"write", "e", "p", "--length", "1", "--ignore-recall"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("for pinrdma hold")));
  EXPECT_THAT(Parse({"read", "e", "p", "--length", "1", "--no-restore"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("for pinrdma check")));
  EXPECT_THAT(Parse({"check", "e", "p", "--length", "1", "--no-atomics=yes"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("takes no value")));
  EXPECT_THAT(Parse({"check", "e", "p", "--length", "1", "--depth", "0"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--depth")));
  EXPECT_THAT(Parse({"check", "e", "p", "--length", "1", "--offset", "18446744073709551615"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflows")));
  EXPECT_THAT(Parse({"info", "extra"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no arguments")));
  EXPECT_THAT(Parse({"check", "e", "p", "--length", "1", "-o", "xml"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("table or json")));
}

TEST(PinrdmaOptionsTest, HelpAnywhereWins) {
  ASSERT_OK_AND_ASSIGN(Options o, Parse({"check", "--help"}));
  EXPECT_TRUE(o.help);
  ASSERT_OK_AND_ASSIGN(o, Parse({"help"}));
  EXPECT_TRUE(o.help);
  ASSERT_OK_AND_ASSIGN(o, Parse({"-h"}));
  EXPECT_TRUE(o.help);
  EXPECT_THAT(HelpText(), HasSubstr("--ignore-recall"));
}

TEST(PinrdmaOptionsTest, SizesAndDurations) {
  EXPECT_EQ(*ParseSize("0"), 0u);
  EXPECT_EQ(*ParseSize("4k"), 4096u);
  EXPECT_EQ(*ParseSize("2G"), 2ull << 30);
  EXPECT_THAT(ParseSize("-1"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("size")));
  EXPECT_THAT(ParseSize("99999999999999999T"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  EXPECT_EQ(*ParseDuration("1.5"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDuration("2m"), absl::Minutes(2));
  EXPECT_THAT(ParseDuration("inf"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("finite")));
  EXPECT_THAT(ParseDuration("soon"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duration")));
}

TEST(PatternTest, DependsOnlyOnSeedAndFileOffset) {
  std::vector<uint8_t> whole(1000), part(777);
  FillPattern(7, 4096, whole.data(), whole.size());
  FillPattern(7, 4096 + 3, part.data(), part.size());  // Unaligned start and end.
  EXPECT_EQ(std::memcmp(whole.data() + 3, part.data(), part.size()), 0);
  for (size_t i = 0; i < whole.size(); ++i) ASSERT_EQ(whole[i], PatternByte(7, 4096 + i)) << i;
  std::vector<uint8_t> other(1000);
  FillPattern(8, 4096, other.data(), other.size());
  EXPECT_NE(whole, other);  // Another seed, other bytes.
  uint64_t word;
  std::memcpy(&word, whole.data(), 8);
  EXPECT_EQ(word, PatternWord(7, 4096 / 8));
}

TEST(PatternTest, CompareFindsTheFirstDifferenceAndCountsThem) {
  std::vector<uint8_t> data(10000);
  FillPattern(3, 100, data.data(), data.size());
  EXPECT_EQ(CompareWithPattern(3, 100, data.data(), data.size()).count, 0u);
  data[5000] ^= 1;
  data[9999] ^= 0x80;
  const Mismatch m = CompareWithPattern(3, 100, data.data(), data.size());
  EXPECT_EQ(m.count, 2u);
  EXPECT_EQ(m.first, 5000u);
  EXPECT_EQ(CompareWithPattern(3, 101, data.data(), data.size()).first, 0u);  // Shifted.
}

TEST(PatternTest, ChecksumChains) {
  const uint8_t bytes[] = "pinbroker";
  EXPECT_EQ(Fnv1a64(bytes + 4, 5, Fnv1a64(bytes, 4)), Fnv1a64(bytes, 9));
  EXPECT_EQ(Fnv1a64(bytes, 0), kFnvBasis);
}

TEST(ChooseChunkTest, RespectsTheLeasesConstraints) {
  pinbroker::client::LeaseLimits plain;
  EXPECT_EQ(ChooseChunk(plain, 0, 64 << 20), 1u << 20);
  EXPECT_EQ(ChooseChunk(plain, 0, 5000), 5000u);
  EXPECT_EQ(ChooseChunk(plain, 300, 5000), 300u);
  pinbroker::client::LeaseLimits odp;
  odp.required_alignment = 4096;
  odp.max_transfer_size = 16384;
  EXPECT_EQ(ChooseChunk(odp, 0, 1 << 20), 16384u);
  EXPECT_EQ(ChooseChunk(odp, 1 << 20, 1 << 20), 16384u);  // Capped.
  EXPECT_EQ(ChooseChunk(odp, 10000, 1 << 20), 8192u);     // Rounded down to whole units.
  EXPECT_EQ(ChooseChunk(odp, 100, 1 << 20), 4096u);       // At least one unit.
}

TEST(OutputTest, ExitCodesAndJsonQuoting) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeFor(absl::PermissionDeniedError("x")), 17);
  EXPECT_EQ(ExitCodeFor(absl::DataLossError("x")), 25);
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

}  // namespace
}  // namespace pinrdma
