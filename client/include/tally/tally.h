#ifndef TALLY_PUBLIC_TALLY_H_
#define TALLY_PUBLIC_TALLY_H_

// Everything a service linking Tally uses: Client (KV, leases, locks,
// idempotency keys), SagaRunner, EmbeddedNode. find_package(Tally) and
// target_link_libraries(... Tally::tally), or pkg-config tally.

#include "tally/client.h"
#include "tally/embedded_node.h"
#include "tally/saga.h"

#endif  // TALLY_PUBLIC_TALLY_H_
