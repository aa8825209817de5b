#ifndef TALLY_TESTS_SIM_CONF_CHANGES_H_
#define TALLY_TESTS_SIM_CONF_CHANGES_H_

#include <optional>

#include "raft/conf_change.h"
#include "raft/types.h"
#include "util/random.h"

namespace tally::sim {

// A random membership change of a group whose configuration is `conf`, among
// nodes 1..nodes, as both simulators propose them: a new learner, a learner
// promoted, a voter removed (perhaps the leader) while more than two are
// left, a learner removed, or a voter replaced in one joint step (left by
// hand half the time when `explicit_joint`, else automatically). nullopt
// when the kind drawn does not apply to `conf`.
std::optional<raft::ConfChange> RandomConfChange(const raft::ConfState& conf,
                                                 int nodes, bool explicit_joint,
                                                 util::SeededRandom& random);

}  // namespace tally::sim

#endif  // TALLY_TESTS_SIM_CONF_CHANGES_H_
