#include "kv/keyspace.h"

#include "kv/storage/leveldb_util.h"

namespace tally::kv {

Keyspace::Keyspace(raft::host::GroupId group) : group_(group) {
  storage::AppendBigEndian64(&prefix_, group);
}

std::string Keyspace::Key(Space space, std::string_view rest) const {
  std::string k = prefix_;
  k.push_back(static_cast<char>(space));
  k.append(rest);
  return k;
}

std::string Keyspace::IdKey(Space space, uint64_t id) const {
  std::string k = Key(space);
  storage::AppendBigEndian64(&k, id);
  return k;
}

}  // namespace tally::kv
