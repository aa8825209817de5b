#include "util/linearizability.h"

#include <algorithm>
#include <limits>
#include <set>
#include <unordered_set>

#include "absl/strings/str_cat.h"

namespace tally {
namespace {

constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

// A doubly linked list of call and return events in time order; linearizing
// an operation lifts its two events out, backtracking puts them back.
struct Event {
  size_t op;
  bool is_call;
  uint64_t time;
  int prev = -1, next = -1;
  int match = -1;  // call: index of its return event
};

class Search {
 public:
  explicit Search(const std::vector<RegisterOp>& ops) : ops_(ops) {
    for (size_t i = 0; i < ops.size(); ++i) {
      events_.push_back({i, true, ops[i].invoked});
      events_.push_back({i, false, ops[i].completed.value_or(kNever)});
    }
    // Calls before returns at equal times: operations that touch in time
    // are concurrent.
    std::sort(events_.begin(), events_.end(),
              [](const Event& a, const Event& b) {
                if (a.time != b.time) return a.time < b.time;
                if (a.is_call != b.is_call) return a.is_call;
                return a.op < b.op;
              });
    std::vector<int> call_of(ops.size(), -1);
    for (size_t i = 0; i < events_.size(); ++i) {
      events_[i].prev = static_cast<int>(i) - 1;
      events_[i].next = i + 1 < events_.size() ? static_cast<int>(i) + 1 : -1;
      if (events_[i].is_call) {
        call_of[events_[i].op] = static_cast<int>(i);
      } else {
        events_[call_of[events_[i].op]].match = static_cast<int>(i);
      }
    }
    head_ = events_.empty() ? -1 : 0;
  }

  // Returns -1 if linearizable, otherwise the op that could not be placed
  // (and fills `prefix` with the longest partial linearization); -2 when the
  // search gave up after `max_states` states.
  int Run(size_t max_states, std::vector<size_t>* prefix) {
    std::vector<uint64_t> linearized((ops_.size() + 63) / 64, 0);
    uint64_t state = 0;
    struct Frame {
      int call;
      uint64_t state;
    };
    std::vector<Frame> stack;
    int entry = head_;
    // The op whose deadline stopped the longest partial linearization:
    // where the history most likely goes wrong.
    int deepest_stuck = -1;
    size_t deepest = 0;
    while (head_ != -1) {
      if (entry == -1) return deepest_stuck;  // unreachable: a return stops it
      const Event& e = events_[entry];
      if (e.is_call) {
        uint64_t next_state = state;
        if (Step(ops_[e.op], &next_state)) {
          linearized[e.op / 64] ^= uint64_t{1} << (e.op % 64);
          if (seen_.insert(Key(linearized, next_state)).second) {
            if (max_states != 0 && seen_.size() > max_states) return -2;
            stack.push_back({entry, state});
            state = next_state;
            Lift(entry);
            entry = head_;
            continue;
          }
          linearized[e.op / 64] ^= uint64_t{1} << (e.op % 64);
        }
        entry = e.next;
      } else if (e.time == kNever) {
        // Unknown outcomes return last: every operation that completed is
        // linearized, and the rest may never have taken effect.
        return -1;
      } else {
        // A return event with its call still in the list: that operation
        // could not be linearized before this point. Backtrack.
        if (deepest_stuck < 0 || stack.size() > deepest) {
          deepest = stack.size();
          deepest_stuck = static_cast<int>(e.op);
          prefix->clear();
          for (const Frame& f : stack) prefix->push_back(events_[f.call].op);
        }
        if (stack.empty()) return deepest_stuck;
        const Frame f = stack.back();
        stack.pop_back();
        state = f.state;
        const size_t op = events_[f.call].op;
        linearized[op / 64] ^= uint64_t{1} << (op % 64);
        Unlift(f.call);
        entry = events_[f.call].next;
      }
    }
    return -1;
  }

 private:
  // Applies `op` to the register: false if it cannot take effect here.
  static bool Step(const RegisterOp& op, uint64_t* state) {
    switch (op.kind) {
      case RegisterOp::Kind::kWrite:
        *state = op.value;
        return true;
      case RegisterOp::Kind::kRead:
        return op.value == *state;
      case RegisterOp::Kind::kCas:
        if (*state != op.expected) return false;
        *state = op.value;
        return true;
    }
    return false;
  }

  static std::string Key(const std::vector<uint64_t>& bits, uint64_t state) {
    std::string key(reinterpret_cast<const char*>(bits.data()),
                    bits.size() * sizeof(uint64_t));
    key.append(reinterpret_cast<const char*>(&state), sizeof(state));
    return key;
  }

  void Remove(int i) {
    Event& e = events_[i];
    if (e.prev != -1)
      events_[e.prev].next = e.next;
    else
      head_ = e.next;
    if (e.next != -1) events_[e.next].prev = e.prev;
  }
  void Restore(int i) {
    Event& e = events_[i];
    if (e.prev != -1)
      events_[e.prev].next = i;
    else
      head_ = i;
    if (e.next != -1) events_[e.next].prev = i;
  }
  void Lift(int call) {
    Remove(call);
    Remove(events_[call].match);
  }
  void Unlift(int call) {
    Restore(events_[call].match);
    Restore(call);
  }

  const std::vector<RegisterOp>& ops_;
  std::vector<Event> events_;
  int head_ = -1;
  std::unordered_set<std::string> seen_;
};

}  // namespace

RegisterCheck CheckRegister(const std::vector<RegisterOp>& history,
                            size_t max_states) {
  std::set<uint64_t> observed;
  for (const RegisterOp& op : history) {
    if (op.kind == RegisterOp::Kind::kRead && op.completed) {
      observed.insert(op.value);
    }
    if (op.kind == RegisterOp::Kind::kCas) observed.insert(op.expected);
  }
  // Operations with unknown outcome that nothing observed can always be
  // placed last, where they change nothing: leave them out.
  std::vector<RegisterOp> ops;
  std::vector<size_t> original;
  for (size_t i = 0; i < history.size(); ++i) {
    const RegisterOp& op = history[i];
    if (!op.completed &&
        (op.kind == RegisterOp::Kind::kRead || !observed.count(op.value))) {
      continue;
    }
    ops.push_back(op);
    original.push_back(i);
  }
  Search search(ops);
  std::vector<size_t> prefix;
  const int stuck = search.Run(max_states, &prefix);
  RegisterCheck result;
  if (stuck == -1) return result;
  if (stuck == -2) {
    result.verdict = Linearizable::kUnknown;
    return result;
  }
  const RegisterOp& op = ops[stuck];
  LinearizabilityViolation v;
  v.op = original[stuck];
  for (size_t i : prefix) v.prefix.push_back(original[i]);
  const char* kind = op.kind == RegisterOp::Kind::kWrite  ? "write "
                     : op.kind == RegisterOp::Kind::kRead ? "read "
                                                          : "cas ";
  v.message = absl::StrCat(
      "op ", op.id, " (", kind,
      op.kind == RegisterOp::Kind::kCas ? absl::StrCat(op.expected, "->")
                                        : std::string(),
      op.value, ", invoked at ", op.invoked, ", completed at ",
      op.completed ? absl::StrCat(*op.completed) : std::string("never"),
      ") cannot be placed in any order consistent with real time");
  result.verdict = Linearizable::kNo;
  result.violation = std::move(v);
  return result;
}

std::optional<std::string> CheckRegisterHistory(
    std::vector<RegisterOp> history) {
  RegisterCheck check = CheckRegister(history);
  if (check.violation) return check.violation->message;
  return std::nullopt;
}

}  // namespace tally
