#ifndef TALLY_CLIENT_FINGERPRINT_H_
#define TALLY_CLIENT_FINGERPRINT_H_

#include <string>
#include <string_view>

namespace tally::client {

// SHA-256 of `bytes` (32 bytes): what identifies a request in an
// idempotency record or a saga (a fingerprint is at most 64 bytes).
std::string Fingerprint(std::string_view bytes);

}  // namespace tally::client

#endif  // TALLY_CLIENT_FINGERPRINT_H_
