#include "client/fingerprint.h"

#include <openssl/evp.h>

namespace tally::client {

std::string Fingerprint(std::string_view bytes) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), out, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(out), n);
}

}  // namespace tally::client
