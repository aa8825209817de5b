// The raft log as a node finds it on disk (kv/storage/log_store.h): entry,
// hard state, snapshot and metadata records of a few groups, any bytes in
// their values. Loading must give a log the host can start from (entries
// contiguous, after the snapshot) or an error; never a crash.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz/input.h"
#include "fuzz/loaded_log.h"
#include "kv/storage/leveldb_util.h"
#include "kv/storage/log_store.h"
#include "kv/storage/memory_engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tally::fuzz::Input in(data, size);
  tally::kv::storage::MemoryEngine engine;
  tally::kv::storage::WriteBatch batch;
  static constexpr char kKinds[] = {'e', 'h', 's', 'm'};
  while (!in.empty()) {
    const uint8_t kind = in.Byte();
    std::string key(1, kKinds[kind % 4]);
    tally::kv::storage::AppendBigEndian64(&key, in.Byte() % 4);  // group
    if (key[0] == 'e') tally::kv::storage::AppendBigEndian64(&key, in.Byte());
    if (kind & 0x80) key.resize(in.Byte() % key.size());  // a torn key
    batch.Put(std::move(key), in.Piece());
  }
  TALLY_FUZZ_CHECK(engine.Write(batch, /*sync=*/true).ok());

  std::unique_ptr<tally::kv::storage::LogStore> log =
      tally::kv::storage::LogStore::Over(&engine);
  auto loaded = log->Load();
  if (!loaded.ok()) return 0;
  tally::fuzz::CheckHostCanStart(*loaded);
  return 0;
}
