// Wire traits of the PinBroker request messages: how gRPC turns a request's bytes into its
// message, at the broker and in every client that links the generated API.
//
// protobuf refuses the whole message when a proto3 `string` field in it is not valid UTF-8, and
// gRPC's default traits then answer INTERNAL with an empty message before any handler runs.
// These traits keep gRPC's own parse (and its serialization) unchanged; only when the parse
// fails do they look at the bytes again to say why, as INVALID_ARGUMENT:
//   "field pinbroker.v1.TruncateRequest.options.initiator is not valid UTF-8 (at byte 3); every
//    string field must be UTF-8 text"
// or, for any other malformed encoding, "request is not a valid pinbroker.v1.PinRequest
// message". Neither quotes the client's bytes.
//
// The generated pinbroker.grpc.pb.h includes this header right after pinbroker.pb.h (the
// grpc_cpp_plugin option additional_header_includes, api/CMakeLists.txt), so the
// specializations are declared before any gRPC template is instantiated with a request type.
// Include pinbroker.grpc.pb.h, not this header. The plugin's unary method handlers would
// deserialize through SerializationTraits<MessageLite>; the build has them use the request's
// own type (api/concrete_message_types.cmake), as the streaming ones already do.
//
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <string_view>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message_lite.h"
#include "pinbroker/v1/pinbroker.pb.h"

// Every message that a PinBroker RPC takes as its request, as X(Type).
#define PINBROKER_V1_REQUEST_TYPES(X) \
  X(OpenSessionRequest)               \
  X(RenewSessionRequest)              \
  X(CloseSessionRequest)              \
  X(WatchRequest)                     \
  X(PinRequest)                       \
  X(RenewRequest)                     \
  X(ReleaseRequest)                   \
  X(ListLeasesRequest)                \
  X(RevokeLeaseRequest)               \
  X(ListSessionsRequest)              \
  X(DescribeFileRequest)              \
  X(TruncateRequest)                  \
  X(PunchHoleRequest)                 \
  X(GetInfoRequest)                   \
  X(EchoRequest)

namespace pinbroker::v1::wire {

// Why `bytes`, which protobuf would not parse as a `type`, is not one: INVALID_ARGUMENT naming
// the first string field (by its path from `type`, "pinbroker.v1.PinRequest.path") whose value
// is not valid UTF-8 and the byte offset where its value stops being UTF-8; else
// INVALID_ARGUMENT "request is not a valid <type> message".
grpc::Status DiagnoseUnparsable(std::string_view bytes, const google::protobuf::Descriptor& type);

// gRPC's default deserialization of `buffer` into `message` (a `type`); when that fails,
// DiagnoseUnparsable's answer instead of gRPC's INTERNAL with no message.
grpc::Status DeserializeRequest(grpc::ByteBuffer* buffer, grpc::protobuf::MessageLite* message,
                                const google::protobuf::Descriptor& type);

// The full names of the types in PINBROKER_V1_REQUEST_TYPES ("pinbroker.v1.PinRequest", ...).
std::vector<std::string_view> RequestTypesWithWireTraits();

}  // namespace pinbroker::v1::wire

#define PINBROKER_V1_WIRE_TRAITS(Type)                                                        \
  template <>                                                                                 \
  class SerializationTraits<::pinbroker::v1::Type, void> {                                    \
   public:                                                                                    \
    static Status Serialize(const protobuf::MessageLite& message, ByteBuffer* buffer,         \
                            bool* own_buffer) {                                               \
      return GenericSerialize<ProtoBufferWriter, ::pinbroker::v1::Type>(message, buffer,      \
                                                                        own_buffer);          \
    }                                                                                         \
    static Status Deserialize(ByteBuffer* buffer, protobuf::MessageLite* message) {           \
      return ::pinbroker::v1::wire::DeserializeRequest(buffer, message,                       \
                                                       *::pinbroker::v1::Type::descriptor()); \
    }                                                                                         \
  };

namespace grpc {
PINBROKER_V1_REQUEST_TYPES(PINBROKER_V1_WIRE_TRAITS)
}  // namespace grpc

#undef PINBROKER_V1_WIRE_TRAITS
