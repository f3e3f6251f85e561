// The verbs kit (common/verbs/) without a device: RcQueue's creation and teardown order and
// its unwinding of a half-built queue, through a fake verbs table; WakeFd and PollReadable on
// real fds.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "common/verbs/fd_events.h"
#include "common/verbs/rc_queue.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pinbroker::verbs {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// One fake library at a time: the table's plain function pointers reach it through `g_fake`.
struct FakeVerbs {
  std::vector<std::string> calls;
  std::string fail;  // The create call that fails with `fail_errno`.
  int fail_errno = ENOMEM;
  int pipe_fds[2] = {-1, -1};
  ibv_comp_channel channel = {};
  ibv_cq cq = {};
  ibv_qp qp = {};
  ibv_qp_init_attr qp_attr = {};
  int cqe = 0;
  unsigned int acked = 0;
};
FakeVerbs* g_fake = nullptr;

VerbsOps FakeOps() {
  return VerbsOps{
      .create_comp_channel = [](ibv_context*) -> ibv_comp_channel* {
        g_fake->calls.push_back("create_comp_channel");
        if (g_fake->fail == "create_comp_channel") {
          errno = g_fake->fail_errno;
          return nullptr;
        }
        g_fake->channel.fd = g_fake->pipe_fds[0];
        return &g_fake->channel;
      },
      .destroy_comp_channel =
          [](ibv_comp_channel*) {
            g_fake->calls.push_back("destroy_comp_channel");
            return 0;
          },
      .create_cq = [](ibv_context*, int cqe, ibv_comp_channel* ch) -> ibv_cq* {
        g_fake->calls.push_back("create_cq");
        EXPECT_EQ(ch, &g_fake->channel);
        g_fake->cqe = cqe;
        if (g_fake->fail == "create_cq") {
          errno = g_fake->fail_errno;
          return nullptr;
        }
        return &g_fake->cq;
      },
      .destroy_cq =
          [](ibv_cq*) {
            g_fake->calls.push_back("destroy_cq");
            return 0;
          },
      .ack_cq_events =
          [](ibv_cq*, unsigned int n) {
            g_fake->calls.push_back("ack_cq_events");
            g_fake->acked += n;
          },
      .create_qp =
          [](rdma_cm_id* id, ibv_pd*, ibv_qp_init_attr* attr) {
            g_fake->calls.push_back("create_qp");
            g_fake->qp_attr = *attr;
            if (g_fake->fail == "create_qp") {
              errno = g_fake->fail_errno;
              return -1;
            }
            id->qp = &g_fake->qp;
            return 0;
          },
      .destroy_qp =
          [](rdma_cm_id* id) {
            g_fake->calls.push_back("destroy_qp");
            id->qp = nullptr;
          },
  };
}

class RcQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::pipe(fake_.pipe_fds), 0);
    g_fake = &fake_;
  }
  void TearDown() override {
    g_fake = nullptr;
    ::close(fake_.pipe_fds[0]);
    ::close(fake_.pipe_fds[1]);
  }
  FakeVerbs fake_;
  VerbsOps ops_ = FakeOps();
  rdma_cm_id id_ = {};
  ibv_pd* pd_ = reinterpret_cast<ibv_pd*>(&id_);  // Never dereferenced by the fake.
};

TEST_F(RcQueueTest, CreatesInOrderAndDestroysInReverse) {
  RcQueueSpec spec;
  spec.cq_depth = 33;
  spec.max_send_wr = 17;
  {
    absl::StatusOr<RcQueue> queue = RcQueue::Create(&id_, pd_, spec, ops_);
    ASSERT_TRUE(queue.ok()) << queue.status();
    EXPECT_EQ(queue->qp(), &fake_.qp);
    EXPECT_EQ(queue->cq(), &fake_.cq);
    EXPECT_EQ(queue->channel_fd(), fake_.pipe_fds[0]);
    EXPECT_EQ(fake_.cqe, 33);
    EXPECT_EQ(fake_.qp_attr.send_cq, &fake_.cq);
    EXPECT_EQ(fake_.qp_attr.recv_cq, &fake_.cq);
    EXPECT_EQ(fake_.qp_attr.qp_type, IBV_QPT_RC);
    EXPECT_EQ(fake_.qp_attr.cap.max_send_wr, 17u);
    EXPECT_EQ(fake_.qp_attr.sq_sig_all, 0);
    // The completion channel's fd is made non-blocking.
    EXPECT_NE(::fcntl(fake_.pipe_fds[0], F_GETFL) & O_NONBLOCK, 0);
    queue->AddUnackedEvents(3);
  }
  EXPECT_THAT(fake_.calls,
              ElementsAre("create_comp_channel", "create_cq", "create_qp", "destroy_qp",
                          "ack_cq_events", "destroy_cq", "destroy_comp_channel"));
  EXPECT_EQ(fake_.acked, 3u);
  EXPECT_EQ(id_.qp, nullptr);
}

TEST_F(RcQueueTest, ResetIsIdempotentAndMovesTransferOwnership) {
  absl::StatusOr<RcQueue> created = RcQueue::Create(&id_, pd_, RcQueueSpec{}, ops_);
  ASSERT_TRUE(created.ok()) << created.status();
  RcQueue moved = std::move(*created);
  EXPECT_TRUE(created->empty());
  EXPECT_FALSE(moved.empty());
  EXPECT_TRUE(moved.Reset().ok());
  EXPECT_TRUE(moved.empty());
  EXPECT_TRUE(moved.Reset().ok());
  EXPECT_THAT(fake_.calls, ElementsAre("create_comp_channel", "create_cq", "create_qp",
                                       "destroy_qp", "destroy_cq", "destroy_comp_channel"));
}

TEST_F(RcQueueTest, FailedQueuePairUnwindsCqAndChannel) {
  fake_.fail = "create_qp";
  RcQueueSpec spec;
  spec.what = "fake0";
  absl::StatusOr<RcQueue> queue = RcQueue::Create(&id_, pd_, spec, ops_);
  ASSERT_FALSE(queue.ok());
  EXPECT_EQ(queue.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(queue.status().message(), HasSubstr("rdma_create_qp on fake0"));
  EXPECT_THAT(fake_.calls, ElementsAre("create_comp_channel", "create_cq", "create_qp",
                                       "destroy_cq", "destroy_comp_channel"));
}

TEST_F(RcQueueTest, FailedCqUnwindsChannel) {
  fake_.fail = "create_cq";
  fake_.fail_errno = EINVAL;
  absl::StatusOr<RcQueue> queue = RcQueue::Create(&id_, pd_, RcQueueSpec{}, ops_);
  ASSERT_FALSE(queue.ok());
  EXPECT_EQ(queue.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(queue.status().message(), HasSubstr("ibv_create_cq"));
  EXPECT_THAT(fake_.calls, ElementsAre("create_comp_channel", "create_cq", "destroy_comp_channel"));
}

TEST_F(RcQueueTest, FailedChannelCreatesNothingElse) {
  fake_.fail = "create_comp_channel";
  absl::StatusOr<RcQueue> queue = RcQueue::Create(&id_, pd_, RcQueueSpec{}, ops_);
  ASSERT_FALSE(queue.ok());
  EXPECT_THAT(queue.status().message(), HasSubstr("ibv_create_comp_channel"));
  EXPECT_THAT(fake_.calls, ElementsAre("create_comp_channel"));
}

TEST(WakeFdTest, WakeMakesReadableUntilDrained) {
  absl::StatusOr<WakeFd> wake = WakeFd::Create();
  ASSERT_TRUE(wake.ok()) << wake.status();
  const int fds[] = {wake->fd()};
  absl::StatusOr<std::vector<bool>> ready = PollReadable(fds, absl::ZeroDuration());
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_THAT(*ready, ElementsAre(false));
  wake->Wake();
  wake->Wake();
  ready = PollReadable(fds, absl::ZeroDuration());
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_THAT(*ready, ElementsAre(true));
  wake->Drain();
  ready = PollReadable(fds, absl::ZeroDuration());
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_THAT(*ready, ElementsAre(false));
}

TEST(PollReadableTest, ReportsEachFdInOrder) {
  int a[2], b[2];
  ASSERT_EQ(::pipe(a), 0);
  ASSERT_EQ(::pipe(b), 0);
  ASSERT_EQ(::write(b[1], "x", 1), 1);
  const int fds[] = {a[0], b[0]};
  absl::StatusOr<std::vector<bool>> ready = PollReadable(fds, absl::InfiniteDuration());
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_THAT(*ready, ElementsAre(false, true));
  for (int fd : {a[0], a[1], b[0], b[1]}) ::close(fd);
}

TEST(PollReadableTest, NegativeFdIsIgnored) {
  const int fds[] = {-2};
  // poll ignores negative fds; a closed one is reported POLLNVAL, which is not readable.
  absl::StatusOr<std::vector<bool>> ready = PollReadable(fds, absl::ZeroDuration());
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_THAT(*ready, ElementsAre(false));
}

}  // namespace
}  // namespace pinbroker::verbs
