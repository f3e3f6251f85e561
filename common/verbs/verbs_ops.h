// VerbsOps: the table of libibverbs/librdmacm calls the verbs kit makes to create and destroy
// a connection's completion channel, completion queue and queue pair. RealVerbs() is the real
// library; tests pass a fake table to check the order of creation and teardown without a
// device.
//
// Thread-safety: a table is immutable; RealVerbs() returns one static table, safe to share.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

namespace pinbroker::verbs {

struct VerbsOps {
  // Each returns nullptr (or non-zero) with errno set on failure, like the library calls.
  ibv_comp_channel* (*create_comp_channel)(ibv_context* context);
  int (*destroy_comp_channel)(ibv_comp_channel* channel);
  ibv_cq* (*create_cq)(ibv_context* context, int cqe, ibv_comp_channel* channel);
  int (*destroy_cq)(ibv_cq* cq);
  void (*ack_cq_events)(ibv_cq* cq, unsigned int events);
  // rdma_create_qp: sets id->qp on success.
  int (*create_qp)(rdma_cm_id* id, ibv_pd* pd, ibv_qp_init_attr* attr);
  // rdma_destroy_qp: clears id->qp.
  void (*destroy_qp)(rdma_cm_id* id);
};

const VerbsOps& RealVerbs();

}  // namespace pinbroker::verbs
