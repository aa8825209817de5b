#ifndef TALLY_TESTS_SIM_SEEDS_H_
#define TALLY_TESTS_SIM_SEEDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace tally::sim {

// Parses "N" or "A..B" (inclusive, A <= B) into [*first, *last].
inline bool ParseSeeds(const std::string& text, uint64_t* first,
                       uint64_t* last) {
  std::vector<std::string> parts = absl::StrSplit(text, "..");
  if (parts.size() == 1) {
    if (!absl::SimpleAtoi(parts[0], first)) return false;
    *last = *first;
    return true;
  }
  return parts.size() == 2 && absl::SimpleAtoi(parts[0], first) &&
         absl::SimpleAtoi(parts[1], last) && *first <= *last;
}

}  // namespace tally::sim

#endif  // TALLY_TESTS_SIM_SEEDS_H_
