#ifndef TALLY_TESTS_SIM_LINEARIZABILITY_H_
#define TALLY_TESTS_SIM_LINEARIZABILITY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tally::sim {

// One client operation on one register, as the client saw it.
struct RegisterOp {
  enum class Kind : uint8_t { kWrite, kRead };
  Kind kind = Kind::kWrite;
  uint64_t value = 0;    // written, or returned by the read
  uint64_t invoked = 0;  // logical time of the call
  // Logical time of the answer; nullopt if the client never learned the
  // outcome (a write that may or may not have happened).
  std::optional<uint64_t> completed;
  uint64_t id = 0;  // for messages
};

// Checks that a single register's history is linearizable: there is a total
// order of the operations, consistent with real time (an operation that
// completed before another was invoked comes first), in which every read
// returns the latest write before it (0 before any write). Writes must have
// distinct values. Returns nullopt if linearizable, otherwise a description
// of an operation the search could not place.
//
// The search is Wing & Gong's with Lowe's memoization of (linearized set,
// register value), as in Porcupine. Reads with unknown outcome say nothing
// and are dropped; so are writes with unknown outcome that no read observed,
// which can always be placed last.
std::optional<std::string> CheckRegisterHistory(
    std::vector<RegisterOp> history);

}  // namespace tally::sim

#endif  // TALLY_TESTS_SIM_LINEARIZABILITY_H_
