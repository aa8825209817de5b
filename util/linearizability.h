#ifndef TALLY_UTIL_LINEARIZABILITY_H_
#define TALLY_UTIL_LINEARIZABILITY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tally {

// One client operation on one register, as the client saw it. The register
// starts at 0 (absent).
struct RegisterOp {
  enum class Kind : uint8_t { kWrite, kRead, kCas };
  Kind kind = Kind::kWrite;
  // Written, returned by the read, or written by a compare-and-set that
  // found `expected`. A compare-and-set that failed had no effect and is not
  // part of the history.
  uint64_t value = 0;
  uint64_t invoked = 0;  // logical time of the call
  // Logical time of the answer; nullopt if the client never learned the
  // outcome (a write that may or may not have happened).
  std::optional<uint64_t> completed;
  uint64_t id = 0;        // for messages
  uint64_t expected = 0;  // kCas: the value it required
};

// Why a history is not linearizable.
struct LinearizabilityViolation {
  // Index into the history of an operation that cannot be placed: the one
  // that stopped the longest partial linearization the search found.
  size_t op = 0;
  // That partial linearization, as indices into the history, in order.
  std::vector<size_t> prefix;
  std::string message;
};

// Checks that a single register's history is linearizable: there is a total
// order of the operations, consistent with real time (an operation that
// completed before another was invoked comes first), in which every read
// returns the latest write before it (0 before any write) and every
// compare-and-set found its expected value. Writes must have distinct
// values. Returns nullopt if linearizable, otherwise a description of an
// operation the search could not place.
//
// The search is Wing & Gong's with Lowe's memoization of (linearized set,
// register value), as in Porcupine. Reads with unknown outcome say nothing
// and are dropped; so are writes with unknown outcome that no read observed,
// which can always be placed last.
std::optional<std::string> CheckRegisterHistory(
    std::vector<RegisterOp> history);

// The same, with the details of a violation. `max_states` bounds the
// memoized search (0: no bound); a search that reaches it returns
// kUnknown.
enum class Linearizable : uint8_t { kYes, kNo, kUnknown };
struct RegisterCheck {
  Linearizable verdict = Linearizable::kYes;
  std::optional<LinearizabilityViolation> violation;
};
RegisterCheck CheckRegister(const std::vector<RegisterOp>& history,
                            size_t max_states = 0);

}  // namespace tally

#endif  // TALLY_UTIL_LINEARIZABILITY_H_
