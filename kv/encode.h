#ifndef TALLY_KV_ENCODE_H_
#define TALLY_KV_ENCODE_H_

#include <string>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/message_lite.h"

namespace tally::kv {

// `m`'s bytes with map entries in key order. Protobuf's maps iterate in an
// order it randomizes per instance, so a message with a map field encodes
// differently from one replica (or one apply) to the next unless written
// this way: the state machine writes session records and command results
// (which hold maps) with it.
inline std::string EncodeDeterministic(const google::protobuf::MessageLite& m) {
  // As SerializeAsString: sized once, written in place.
  std::string out(m.ByteSizeLong(), '\0');
  {
    google::protobuf::io::ArrayOutputStream stream(
        out.data(), static_cast<int>(out.size()));
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeWithCachedSizes(&coded);
  }
  return out;
}

}  // namespace tally::kv

#endif  // TALLY_KV_ENCODE_H_
