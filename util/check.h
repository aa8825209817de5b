#ifndef TALLY_UTIL_CHECK_H_
#define TALLY_UTIL_CHECK_H_

#include <cstdio>
#include <cstdlib>

// TALLY_CHECK(cond, msg): a broken invariant is fatal. Prints where and why to
// stderr and aborts; never compiled out. Used where continuing would risk
// corrupting replicated state.
#define TALLY_CHECK(cond, msg)                                             \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", __FILE__, \
                   __LINE__, #cond, msg);                                  \
      std::abort();                                                        \
    }                                                                      \
  } while (false)

#endif  // TALLY_UTIL_CHECK_H_
