// Typed requests and responses for the RPCs the broker serves on gRPC's raw callback API.
//
// The RPCs that may wait (Truncate, PunchHole, RevokeLease, Watch) run on gRPC's callback API so
// that a waiting call costs no thread. gRPC 1.51's typed callback handlers answer a request that
// fails to decode with UNIMPLEMENTED and no message, discarding what the decoder said; so the
// broker takes those requests as bytes (the generated WithRawCallbackMethod_* bases) and decodes
// them here with the wire traits' diagnosis (api/pinbroker/v1/wire_traits.h). A non-UTF-8 field
// is then INVALID_ARGUMENT naming it, as it is for the calls on the synchronous API.
//
// Thread-safety: DecodeRequest and EncodeMessage are stateless. A UnaryAnswer belongs to one
// call; it may be moved to and finished from any thread, once.
#pragma once

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/callback_common.h>
#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <utility>

#include "pinbroker/v1/pinbroker.grpc.pb.h"

namespace pinbroker::broker {

// `bytes` decoded as a `Request`; else INVALID_ARGUMENT saying why (the field that is not
// UTF-8, or that the bytes are no such message), quoting none of them.
template <typename Request>
::grpc::Status DecodeRequest(const ::grpc::ByteBuffer& bytes, Request* request) {
  ::grpc::ByteBuffer shared(bytes);  // Shares the slices; the decoder consumes its argument.
  return ::pinbroker::v1::wire::DeserializeRequest(&shared, request, *Request::descriptor());
}

// `message` as the bytes gRPC sends (INTERNAL if protobuf cannot serialize it).
template <typename Message>
::grpc::Status EncodeMessage(const Message& message, ::grpc::ByteBuffer* out) {
  bool own_buffer = false;
  return ::grpc::SerializationTraits<Message>::Serialize(message, out, &own_buffer);
}

// The answer of one unary call on the raw callback API: the typed response to fill in and the
// call's DefaultReactor (taken at the first reactor() or Finish(), so a handler that returns a
// reactor of its own never takes it). Finish() encodes the response when the status is OK and
// ends the call. Move-only; finish it at most once, on any thread.
template <typename Response>
class UnaryAnswer {
 public:
  UnaryAnswer(::grpc::CallbackServerContext* context, ::grpc::ByteBuffer* out)
      : context_(context), out_(out), response_(std::make_unique<Response>()) {}
  UnaryAnswer(UnaryAnswer&&) = default;
  UnaryAnswer& operator=(UnaryAnswer&&) = default;

  Response* response() { return response_.get(); }
  // The call's DefaultReactor, for a handler to return before it moves the answer on.
  ::grpc::ServerUnaryReactor* reactor() {
    if (reactor_ == nullptr) reactor_ = context_->DefaultReactor();
    return reactor_;
  }

  // Ends the call with `status` (and, when it is OK, the response); returns the reactor for the
  // handler to return. Nothing of the call may be touched afterwards.
  ::grpc::ServerUnaryReactor* Finish(::grpc::Status status) && {
    if (status.ok()) status = EncodeMessage(*response_, out_);
    ::grpc::ServerUnaryReactor* const call = reactor();
    response_.reset();
    call->Finish(std::move(status));
    return call;
  }

 private:
  ::grpc::CallbackServerContext* context_;
  ::grpc::ServerUnaryReactor* reactor_ = nullptr;
  ::grpc::ByteBuffer* out_;
  std::unique_ptr<Response> response_;
};

}  // namespace pinbroker::broker
