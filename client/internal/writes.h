#ifndef TALLY_CLIENT_INTERNAL_WRITES_H_
#define TALLY_CLIENT_INTERNAL_WRITES_H_

#include <vector>

#include "rpc/kv.pb.h"
#include "tally/client.h"

namespace tally::client::internal {

// The installed API's writes as transaction operations.
inline std::vector<rpc::TxnOp> ToTxnOps(const std::vector<Write>& writes) {
  std::vector<rpc::TxnOp> out(writes.size());
  for (size_t i = 0; i < writes.size(); ++i) {
    if (writes[i].erase) {
      out[i].mutable_delete_()->set_key(writes[i].key);
    } else {
      out[i].mutable_put()->set_key(writes[i].key);
      out[i].mutable_put()->set_value(writes[i].value);
    }
  }
  return out;
}

}  // namespace tally::client::internal

#endif  // TALLY_CLIENT_INTERNAL_WRITES_H_
