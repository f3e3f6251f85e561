// The RDMA client's address helpers (clients/rdma/cm_address.h): numeric resolution and the
// printed forms. No device and no DNS needed.
#include "clients/rdma/cm_address.h"

#include <netinet/in.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pinbroker::client::rdma_internal {
namespace {

using ::testing::HasSubstr;

const sockaddr* AsSockaddr(const sockaddr_storage& s) {
  return reinterpret_cast<const sockaddr*>(&s);
}

TEST(CmAddressTest, ResolvesAndPrintsIpv4WithPort) {
  sockaddr_storage s = {};
  ASSERT_TRUE(ResolveAddress("10.77.0.1", 4791, &s, "broker RDMA address").ok());
  EXPECT_EQ(s.ss_family, AF_INET);
  EXPECT_EQ(AddressString(AsSockaddr(s)), "10.77.0.1:4791");
}

TEST(CmAddressTest, PrintsIpv6InBracketsAndOmitsPortZero) {
  sockaddr_storage s = {};
  ASSERT_TRUE(ResolveAddress("fe80::1", 4791, &s, "broker RDMA address").ok());
  EXPECT_EQ(AddressString(AsSockaddr(s)), "[fe80::1]:4791");
  ASSERT_TRUE(ResolveAddress("10.0.0.2", 0, &s, "source address").ok());
  EXPECT_EQ(AddressString(AsSockaddr(s)), "10.0.0.2");
}

TEST(CmAddressTest, UnknownFamilyAndNullPrintAsQuestionMark) {
  sockaddr_storage s = {};
  s.ss_family = AF_UNIX;
  EXPECT_EQ(AddressString(AsSockaddr(s)), "?");
  EXPECT_EQ(AddressString(nullptr), "?");
}

TEST(CmAddressTest, UnresolvableHostIsInvalidArgumentNamingIt) {
  sockaddr_storage s = {};
  absl::Status status = ResolveAddress("not an address", 1, &s, "source address");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("source address \"not an address\""));
}

}  // namespace
}  // namespace pinbroker::client::rdma_internal
