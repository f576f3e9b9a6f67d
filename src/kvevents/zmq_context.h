// kvevents/zmq_context.h — the process's one ZeroMQ context (one I/O thread), shared by every
// publisher and subscriber. Thread-safety: a zmq context is thread-safe; sockets are not.
#pragma once

#include <zmq.hpp>

namespace tidegate::kvevents {

zmq::context_t& Context();

}  // namespace tidegate::kvevents
