#include "kvevents/zmq_context.h"

namespace tidegate::kvevents {

zmq::context_t& Context() {
  // Never destroyed: sockets owned by objects with static lifetime may still close after main.
  static zmq::context_t* ctx = new zmq::context_t(1);
  return *ctx;
}

}  // namespace tidegate::kvevents
