#ifndef TALLY_CLOCKS_ORDER_H_
#define TALLY_CLOCKS_ORDER_H_

namespace tally::clocks {

// How two causal histories relate; shared by every clock type.
enum class Order {
  kBefore,      // a happened before b
  kAfter,       // b happened before a
  kEqual,       // the same history
  kConcurrent,  // neither saw the other
};

const char* OrderName(Order o);

}  // namespace tally::clocks

#endif  // TALLY_CLOCKS_ORDER_H_
