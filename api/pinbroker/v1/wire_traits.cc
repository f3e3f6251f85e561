#include "pinbroker/v1/wire_traits.h"

#include <grpcpp/impl/codegen/proto_buffer_reader.h>

#include <map>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/unknown_field_set.h"

namespace pinbroker::v1::wire {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// protobuf's own nesting limit (io::CodedInputStream's default recursion limit).
constexpr int kMaxDepth = 100;

// Only proto3 string fields must hold UTF-8 (as protobuf checks when it parses them).
bool MustBeUtf8(const FieldDescriptor& field) {
  return field.type() == FieldDescriptor::TYPE_STRING &&
         field.file()->syntax() == FileDescriptor::SYNTAX_PROTO3;
}

// The first string field below `fields` (a `type`, reached as `path`) that is not UTF-8, as the
// status naming it; nullopt when there is none. Fields that `type` does not declare, or that
// arrive with another wire type, are not its fields' values (protobuf keeps them as unknown).
std::optional<grpc::Status> FirstNonUtf8(const UnknownFieldSet& fields, const Descriptor& type,
                                         const std::string& path, int depth) {
  if (depth > kMaxDepth) return std::nullopt;
  std::map<int, int> seen;  // Field number -> occurrences so far (repeated fields).
  for (int i = 0; i < fields.field_count(); ++i) {
    const UnknownField& value = fields.field(i);
    const FieldDescriptor* field = type.FindFieldByNumber(value.number());
    if (field == nullptr || value.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    if (!MustBeUtf8(*field) && field->type() != FieldDescriptor::TYPE_MESSAGE) continue;
    std::string name = absl::StrCat(path, ".", field->name());
    const int index = seen[field->number()]++;
    if (field->is_repeated()) absl::StrAppend(&name, "[", index, "]");
    const std::string& bytes = value.length_delimited();
    if (MustBeUtf8(*field)) {
      const int valid = google::protobuf::internal::UTF8SpnStructurallyValid(bytes);
      if (static_cast<size_t>(valid) == bytes.size()) continue;
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("field ", name, " is not valid UTF-8 (at byte ", valid,
                                       "); every string field must be UTF-8 text"));
    }
    UnknownFieldSet nested;
    if (!nested.ParseFromString(bytes)) continue;
    if (auto found = FirstNonUtf8(nested, *field->message_type(), name, depth + 1)) return found;
  }
  return std::nullopt;
}

}  // namespace

grpc::Status DiagnoseUnparsable(std::string_view bytes, const Descriptor& type) {
  UnknownFieldSet fields;
  if (fields.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    if (auto found = FirstNonUtf8(fields, type, type.full_name(), 0)) return *found;
  }
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("request is not a valid ", type.full_name(), " message"));
}

grpc::Status DeserializeRequest(grpc::ByteBuffer* buffer, grpc::protobuf::MessageLite* message,
                                const Descriptor& type) {
  if (buffer == nullptr || !buffer->Valid()) {
    return grpc::GenericDeserialize<grpc::ProtoBufferReader, grpc::protobuf::MessageLite>(buffer,
                                                                                          message);
  }
  // Copying shares the slices (reference counts): the bytes stay readable after the default
  // parse has cleared `buffer`, for the rare request that fails it.
  grpc::ByteBuffer copy(*buffer);
  grpc::Status status =
      grpc::GenericDeserialize<grpc::ProtoBufferReader, grpc::protobuf::MessageLite>(buffer,
                                                                                     message);
  // A parse that failed is INTERNAL with the message's InitializationErrorString(), always
  // empty for proto3; anything else (no reader for the buffer) is passed on as it is.
  if (status.ok() || !status.error_message().empty()) return status;
  std::vector<grpc::Slice> slices;
  if (!copy.Dump(&slices).ok()) return status;
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return DiagnoseUnparsable(bytes, type);
}

std::vector<std::string_view> RequestTypesWithWireTraits() {
#define PINBROKER_V1_FULL_NAME(Type) \
  std::string_view(::pinbroker::v1::Type::descriptor()->full_name()),
  return {PINBROKER_V1_REQUEST_TYPES(PINBROKER_V1_FULL_NAME)};
#undef PINBROKER_V1_FULL_NAME
}

}  // namespace pinbroker::v1::wire
