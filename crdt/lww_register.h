#ifndef TALLY_CRDT_LWW_REGISTER_H_
#define TALLY_CRDT_LWW_REGISTER_H_

#include <string>
#include <tuple>

#include "clocks/hybrid_logical_clock.h"
#include "clocks/version_vector.h"

namespace tally::crdt {

// A last-writer-wins register: the write with the highest hybrid logical
// timestamp wins, ties broken by the higher replica id. Concurrent writes
// are lost except one: use MVRegister to keep them.
class LwwRegister {
 public:
  // Writes `value` at `ts` (from the replica's hybrid clock); returns the
  // delta (the whole register, which is small).
  LwwRegister Set(clocks::HlcTimestamp ts, clocks::ReplicaId replica,
                  std::string value) {
    LwwRegister delta;
    delta.ts_ = ts;
    delta.replica_ = replica;
    delta.value_ = std::move(value);
    delta.set_ = true;
    Merge(delta);
    return delta;
  }
  // The later (timestamp, replica) wins. A timestamp and replica name one
  // write; should two states disagree on its value (a faulty peer, a
  // damaged record), the larger value wins, so replicas still converge.
  void Merge(const LwwRegister& other) {
    if (other.set_ &&
        (!set_ || std::tie(other.ts_, other.replica_, other.value_) >
                      std::tie(ts_, replica_, value_))) {
      *this = other;
    }
  }
  bool is_set() const { return set_; }
  const std::string& value() const { return value_; }
  clocks::HlcTimestamp timestamp() const { return ts_; }
  clocks::ReplicaId replica() const { return replica_; }
  bool operator==(const LwwRegister&) const = default;

 private:
  clocks::HlcTimestamp ts_;
  clocks::ReplicaId replica_ = 0;
  std::string value_;
  bool set_ = false;
};

}  // namespace tally::crdt

#endif  // TALLY_CRDT_LWW_REGISTER_H_
