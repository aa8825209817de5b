#ifndef TALLY_KV_KEYSPACE_H_
#define TALLY_KV_KEYSPACE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "raft/host/interfaces.h"

namespace tally::kv {

// The layout of a node's state database, which every raft group of the node
// shares. A key is the group id (8 bytes, big-endian), one letter naming a
// key space, and the key within it:
//   'a'                AppliedState: applied index, revision, log time
//                      (the dispatcher, state_machine.h)
//   'd' key            StoredValue (kvstore/)
//   's' client id      SessionRecord (session/)
//   'm' member id      Member (meta/, metadata group)
//   't' member id      "" once the member was removed (meta/)
//   'r' range start    RangeDescriptor (meta/)
//   'l' lease id       LeaseRecord (lease/, metadata group)
//   'e' expiry lease   "": leases by the log time they end (lease/)
//   'k' lock name      LockRecord (lock/, metadata group)
//   'h' lease name     "": the locks a lease holds or waits for (lock/)
//   'o'                the last fence token issued (lock/)
//   'f' key prefix     FenceRecord (kvstore/, data groups)
//   'g' lease key      "": the keys attached to a lease (kvstore/)
//   'i' scope \0 key   IdemRecord (idempotency/, data groups)
//   'j' time scope \0 key
//                      "": idempotency records by when they go (idempotency/)
//   'q' saga id        SagaRecord (saga/, data groups)
//   'u' time saga id   "": sagas by when something is due (saga/)
//   'c' table name     CrdtTable: a CRDT table's schema (crdt_table/,
//                      metadata group; the rows live outside raft)
//   'w' replica id     CrdtReplicaRecord (crdt_table/members.h, metadata
//                      group)
//   'y'                CrdtCut: the stability cut (crdt_table/members.h)
//   'v' table id row   CrdtCasRow: a row's cas_register columns
//                      (crdt_table/cas_rows.h, data groups)
//   'n' revision n     WatchRecord: the n-th change of that revision
//                      (watch/history.h, data groups)
//   'p'                WatchHistoryState (watch/history.h)
//   'x' kind name      auth records (auth/, metadata group): kind 'u' user
//                      (AuthUser), 'r' role (AuthRole), 't' token id
//                      (AuthToken), 's' AuthSettings (no name)
// Ids are 8 bytes, big-endian, so that byte order is numeric order. A new
// module takes a new letter here, and only here.
enum class Space : char {
  kApplied = 'a',
  kData = 'd',
  kSession = 's',
  kMember = 'm',
  kRemovedMember = 't',
  kRange = 'r',
  kLease = 'l',
  kLeaseExpiry = 'e',
  kLock = 'k',
  kLockOfLease = 'h',
  kLastToken = 'o',
  kFence = 'f',
  kKeyOfLease = 'g',
  kIdem = 'i',
  kIdemReap = 'j',
  kSaga = 'q',
  kSagaDue = 'u',
  kCrdtTable = 'c',
  kCrdtReplica = 'w',
  kCrdtCut = 'y',
  kCrdtCasRow = 'v',
  kWatchRecord = 'n',
  kWatchHistory = 'p',
  kAuth = 'x',
};

// The keys of one group.
class Keyspace {
 public:
  explicit Keyspace(raft::host::GroupId group);
  raft::host::GroupId group() const { return group_; }
  std::string Key(Space space, std::string_view rest = {}) const;
  std::string IdKey(Space space, uint64_t id) const;
  // Every key of the group (what a snapshot carries).
  const std::string& prefix() const { return prefix_; }

 private:
  raft::host::GroupId group_;
  std::string prefix_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_KEYSPACE_H_
