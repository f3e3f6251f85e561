// Hand-made protobuf wire bytes, for requests the generated code would not send (a `string`
// field holding bytes that are not UTF-8, a message cut short).
//
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"

namespace pinbroker::testing {

// Field `number`, length-delimited (a string, bytes or message field), holding `value`.
// Appended to a message's bytes, it sets the field (a message field is merged into).
inline std::string LengthDelimitedField(int number, std::string_view value) {
  using google::protobuf::internal::WireFormatLite;
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.WriteTag(WireFormatLite::MakeTag(number, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
    coded.WriteVarint32(static_cast<uint32_t>(value.size()));
    coded.WriteRaw(value.data(), static_cast<int>(value.size()));
  }
  return out;
}

}  // namespace pinbroker::testing
