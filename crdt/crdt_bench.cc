// Micro-benchmarks of the CRDTs. Run: build/bin/crdt_bench
// Figures and the command that produced them: docs/crdt.md.

#include <benchmark/benchmark.h>

#include "absl/strings/str_cat.h"
#include "crdt/codec.h"
#include "util/random.h"

namespace tally::crdt {
namespace {

// Two replicas that each added half of `n` elements, then shared a third.
std::pair<AWSet, AWSet> TwoSets(int n) {
  AWSet a, b;
  for (int i = 0; i < n; ++i) {
    (i % 2 ? a : b).Add(1 + i % 2, absl::StrCat("element-", i));
  }
  for (int i = 0; i < n / 3; ++i) b.Merge(a.Add(1, absl::StrCat("shared-", i)));
  return {a, b};
}

void BM_MergeSets(benchmark::State& state) {
  auto [a, b] = TwoSets(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    AWSet x = a;
    x.Merge(b.state());
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(BM_MergeSets)->Arg(10000)->Unit(benchmark::kMillisecond);

void BM_EncodeSet(benchmark::State& state) {
  auto [a, b] = TwoSets(static_cast<int>(state.range(0)));
  a.Merge(b.state());
  size_t bytes = 0;
  for (auto _ : state) {
    std::string s = Encode(a.state());
    bytes = s.size();
    benchmark::DoNotOptimize(s);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_EncodeSet)->Arg(10000)->Unit(benchmark::kMillisecond);

void BM_DecodeSet(benchmark::State& state) {
  auto [a, b] = TwoSets(static_cast<int>(state.range(0)));
  a.Merge(b.state());
  const std::string data = Encode(a.state());
  for (auto _ : state) {
    auto s = DecodeAWSet(data);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_DecodeSet)->Arg(10000)->Unit(benchmark::kMillisecond);

// 100,000 random adds and removes over 5 replicas. Each replica groups its
// deltas and ships the group to the others every 1,000 operations (delta
// intervals); at the end all have everything. Reports how much metadata the
// converged state carries per live element.
void BM_MetadataAfterChurn(benchmark::State& state) {
  for (auto _ : state) {
    util::SeededRandom rng(1);
    std::vector<AWSet> replicas(5);
    std::vector<Causal<SetStore>> pending(5);
    for (int i = 0; i < 100000; ++i) {
      const size_t r = rng.Uniform(5);
      const std::string e = absl::StrCat("item-", rng.Uniform(20000));
      pending[r].Merge(rng.Chance(0.6) ? replicas[r].Add(r + 1, e)
                                       : replicas[r].Remove(e));
      if (i % 1000 == 999) {
        for (size_t from = 0; from < 5; ++from) {
          for (size_t to = 0; to < 5; ++to) {
            if (to != from) replicas[to].Merge(pending[from]);
          }
          pending[from] = {};
        }
      }
    }
    const AWSet& s = replicas[0];
    for (const AWSet& other : replicas) {
      if (!(other == s)) state.SkipWithError("replicas did not converge");
    }
    size_t elements_bytes = 0;
    for (const std::string& e : s.Elements()) elements_bytes += e.size();
    const size_t total = Encode(s.state()).size();
    state.counters["live_elements"] = static_cast<double>(s.size());
    state.counters["encoded_bytes"] = static_cast<double>(total);
    state.counters["metadata_bytes_per_element"] =
        static_cast<double>(total - elements_bytes) /
        static_cast<double>(std::max<size_t>(1, s.size()));
    state.counters["cloud_dots"] =
        static_cast<double>(s.state().context.cloud().size());
  }
}
BENCHMARK(BM_MetadataAfterChurn)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tally::crdt

BENCHMARK_MAIN();
