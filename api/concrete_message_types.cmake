# cmake -DFILE=<x.grpc.pb.cc> -P concrete_message_types.cmake: makes the server's unary method
# handlers generated in FILE deserialize each request as its own type instead of as the base
# class every protobuf message shares, so that gRPC goes through SerializationTraits<the request
# type> (pinbroker/v1/wire_traits.h) rather than SerializationTraits<MessageLite>.
#
# grpc_cpp_plugin writes RpcMethodHandler<Service, Req, Resp, ::grpc::protobuf::MessageLite,
# ::grpc::protobuf::MessageLite>; the last two arguments default to Req and Resp. (Streaming
# handlers already use the request's type; the client side only serializes requests, which the
# traits do as gRPC does.) Fails if a unary handler still names MessageLite, so a plugin that
# writes something else breaks the build rather than the traits.
file(READ "${FILE}" text)
string(REGEX REPLACE
  "(RpcMethodHandler<[^>]*), ::grpc::protobuf::MessageLite, ::grpc::protobuf::MessageLite>"
  "\\1>" text "${text}")
if(text MATCHES "RpcMethodHandler<[^>]*MessageLite")
  message(FATAL_ERROR "${FILE}: a generated method handler still deserializes its request as a "
                      "MessageLite; the request types' wire traits would not be used (see "
                      "api/concrete_message_types.cmake)")
endif()
file(WRITE "${FILE}" "${text}")
