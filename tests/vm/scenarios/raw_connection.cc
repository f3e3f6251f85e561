#include "tests/vm/scenarios/raw_connection.h"

#include <arpa/inet.h>
#include <rdma/rdma_verbs.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pinbroker/rdma_wire.h"

namespace pinbroker::scenarios {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RawConnection>> RawConnection::Connect(
    const std::string& address, uint16_t port, const std::string& source,
    const v1::SessionCredentials& credentials) {
  rdma_wire::AttachRequest attach;
  const std::string& sid = credentials.session_id();
  const std::string& token = credentials.token();
  if (sid.empty() || sid.size() > rdma_wire::kMaxSessionIdBytes ||
      token.size() != 2 * rdma_wire::kTokenBytes) {
    return absl::InvalidArgumentError("session id or token of unexpected length");
  }
  attach.session_id_length = static_cast<uint8_t>(sid.size());
  std::memcpy(attach.session_id, sid.data(), sid.size());
  for (size_t i = 0; i < rdma_wire::kTokenBytes; ++i) {
    const int hi = HexDigit(token[2 * i]), lo = HexDigit(token[2 * i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("token is not hex");
    attach.token[i] = static_cast<uint8_t>(hi * 16 + lo);
  }

  std::unique_ptr<RawConnection> conn(new RawConnection());
  sockaddr_in src = {};
  src.sin_family = AF_INET;
  if (inet_pton(AF_INET, source.c_str(), &src.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("bad source address ", source));
  }
  rdma_addrinfo hints = {};
  hints.ai_port_space = RDMA_PS_TCP;
  hints.ai_src_addr = reinterpret_cast<sockaddr*>(&src);
  hints.ai_src_len = sizeof(src);
  rdma_addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (rdma_getaddrinfo(address.c_str(), service.c_str(), &hints, &res) != 0) {
    return Errno(absl::StrCat("rdma_getaddrinfo(", address, ":", port, ")"));
  }
  // A synchronous id (no event channel): rdma_create_ep resolves the address and the route.
  rdma_cm_id* id = nullptr;
  const int created = rdma_create_ep(&id, res, nullptr, nullptr);
  rdma_freeaddrinfo(res);
  if (created != 0) return Errno("rdma_create_ep");
  conn->id_.reset(id);
  auto pd = verbs::AllocPd(id->verbs);
  if (!pd.ok()) return pd.status();
  conn->pd_ = *std::move(pd);
  conn->buffer_ =
      mmap(nullptr, kBufferBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (conn->buffer_ == MAP_FAILED) {
    conn->buffer_ = nullptr;
    return Errno("mmap");
  }
  auto mr = verbs::RegisterMr(conn->pd_.get(), conn->buffer_, kBufferBytes, IBV_ACCESS_LOCAL_WRITE,
                              "the raw connection's buffer");
  if (!mr.ok()) return mr.status();
  conn->mr_ = *std::move(mr);
  auto queue = verbs::RcQueue::Create(
      id, conn->pd_.get(),
      {.cq_depth = 8, .max_send_wr = 4, .max_recv_wr = 1, .what = "the raw connection"});
  if (!queue.ok()) return queue.status();
  conn->queue_ = *std::move(queue);

  rdma_conn_param param = {};
  param.private_data = &attach;
  param.private_data_len = sizeof(attach);
  param.initiator_depth = 1;
  param.responder_resources = 1;
  param.retry_count = 7;
  param.rnr_retry_count = 7;
  if (rdma_connect(id, &param) != 0) {
    return Errno(absl::StrCat("rdma_connect to ", address, ":", port));
  }
  conn->connected_ = true;
  return conn;
}

RawConnection::~RawConnection() {
  if (connected_) rdma_disconnect(id_.get());
  queue_.Reset().IgnoreError();  // Before the MR, the PD and the id.
  mr_.reset();
  if (buffer_ != nullptr) munmap(buffer_, kBufferBytes);
  // pd_, then id_, as members.
}

absl::StatusOr<ibv_wc_status> RawConnection::Write(uint64_t remote_address, uint32_t rkey,
                                                   absl::string_view data, absl::Duration timeout) {
  if (data.size() > kBufferBytes) return absl::InvalidArgumentError("write too large");
  std::memcpy(buffer_, data.data(), data.size());
  ibv_sge sge = {};
  sge.addr = reinterpret_cast<uintptr_t>(buffer_);
  sge.length = static_cast<uint32_t>(data.size());
  sge.lkey = mr_->lkey;
  ibv_send_wr wr = {};
  ibv_send_wr* bad = nullptr;
  wr.wr_id = next_wr_id_++;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = remote_address;
  wr.wr.rdma.rkey = rkey;
  if (int err = ibv_post_send(queue_.qp(), &wr, &bad); err != 0) {
    return absl::UnavailableError(absl::StrCat("ibv_post_send: ", std::strerror(err)));
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    ibv_wc wc = {};
    const int n = ibv_poll_cq(queue_.cq(), 1, &wc);
    if (n < 0) return absl::UnavailableError("ibv_poll_cq failed");
    if (n == 1 && wc.wr_id == wr.wr_id) return wc.status;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no completion within ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
}

}  // namespace pinbroker::scenarios
