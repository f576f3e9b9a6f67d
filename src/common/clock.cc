#include "common/clock.h"

namespace tidegate {

SystemClock& SystemClock::Instance() {
  static SystemClock clock;
  return clock;
}

}  // namespace tidegate
