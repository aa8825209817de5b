#ifndef TALLY_CMD_KVBENCH_WORKLOAD_H_
#define TALLY_CMD_KVBENCH_WORKLOAD_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace tally::kvbench {

// kCrdtIncr: an increment of a CRDT counter (Tally only), sent to the
// endpoints in turn, not to a leader.
enum class Op : uint8_t { kPut, kGet, kCas, kScan, kCrdtIncr };
enum class ReadMode : uint8_t { kLinearizable, kLease, kSerializable };

struct Workload {
  std::string op = "put";   // put, get, mixed, cas, scan, crdt-incr
  double read_ratio = 0.9;  // mixed: the share of gets
  ReadMode read_mode = ReadMode::kLinearizable;
  size_t key_size = 16;
  size_t value_size = 256;
  // Each key's value starts with the key ("=" and padding to value_size),
  // so that a copy of the data can be checked key by key.
  bool values_name_keys = false;
  // Each put's value is fresh random bytes, which no store can compress;
  // otherwise every value is the same run of 'v'.
  bool random_values = false;
  uint64_t keys = 100'000;
  bool zipfian = false;
};

// Draws key numbers in [0, n): uniformly, or from a Zipfian distribution
// (theta 0.99, YCSB's generator: a few keys are hot), scrambled so that the
// hot keys spread over the key space.
class KeyChooser {
 public:
  KeyChooser(uint64_t n, bool zipfian, uint64_t seed);
  uint64_t Next();

 private:
  uint64_t n_;
  bool zipfian_;
  std::mt19937_64 rng_;
  double theta_ = 0.99, zetan_ = 0, alpha_ = 0, eta_ = 0;
};

// The key of number i: "k" and the number, zero-padded to `size` bytes.
std::string KeyName(uint64_t i, size_t size);

// Exact latency percentiles over every recorded operation.
struct Summary {
  uint64_t ops = 0;
  uint64_t errors = 0;
  double seconds = 0;
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;  // ms
  static Summary Of(std::vector<uint32_t>* latencies_us, uint64_t errors,
                    double seconds);
};

}  // namespace tally::kvbench

#endif  // TALLY_CMD_KVBENCH_WORKLOAD_H_
