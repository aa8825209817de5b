#include "cmd/kvbench/workload.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tally::kvbench {

KeyChooser::KeyChooser(uint64_t n, bool zipfian, uint64_t seed)
    : n_(std::max<uint64_t>(n, 1)), zipfian_(zipfian), rng_(seed) {
  if (!zipfian_) return;
  for (uint64_t i = 1; i <= n_; ++i) zetan_ += 1.0 / std::pow(i, theta_);
  const double zeta2 = 1.0 + 1.0 / std::pow(2.0, theta_);
  alpha_ = 1.0 / (1.0 - theta_);
  eta_ = (1.0 - std::pow(2.0 / n_, 1.0 - theta_)) / (1.0 - zeta2 / zetan_);
}

uint64_t KeyChooser::Next() {
  if (!zipfian_)
    return std::uniform_int_distribution<uint64_t>(0, n_ - 1)(rng_);
  const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
  const double uz = u * zetan_;
  uint64_t rank;
  if (uz < 1.0) {
    rank = 0;
  } else if (uz < 1.0 + std::pow(0.5, theta_)) {
    rank = 1;
  } else {
    rank = static_cast<uint64_t>(n_ * std::pow(eta_ * u - eta_ + 1, alpha_));
  }
  // Scramble (FNV-1a of the rank) so that hot keys are not neighbours.
  uint64_t h = 14695981039346656037ull;
  for (int b = 0; b < 8; ++b) {
    h ^= (rank >> (8 * b)) & 0xff;
    h *= 1099511628211ull;
  }
  return h % n_;
}

std::string KeyName(uint64_t i, size_t size) {
  char digits[32];
  const int len = std::snprintf(digits, sizeof(digits), "%llu",
                                static_cast<unsigned long long>(i));
  std::string key = "k";
  if (size > static_cast<size_t>(len) + 1) key.append(size - len - 1, '0');
  key.append(digits, len);
  return key;
}

Summary Summary::Of(std::vector<uint32_t>* lat, uint64_t errors,
                    double seconds) {
  Summary s;
  s.ops = lat->size();
  s.errors = errors;
  s.seconds = seconds;
  if (lat->empty()) return s;
  std::sort(lat->begin(), lat->end());
  auto at = [&](double q) {
    const size_t i = std::min(lat->size() - 1,
                              static_cast<size_t>(q * (lat->size() - 1) + 0.5));
    return (*lat)[i] / 1000.0;
  };
  s.p50 = at(0.50);
  s.p90 = at(0.90);
  s.p99 = at(0.99);
  s.p999 = at(0.999);
  s.max = lat->back() / 1000.0;
  return s;
}

}  // namespace tally::kvbench
