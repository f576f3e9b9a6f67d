// `tidegate sim` — placeholder until the simulator lands.
#include <iostream>

#include "cli/commands.h"

namespace tidegate::cli {

int RunSim(const std::vector<std::string>& args) {
  std::cerr << "tidegate sim: not implemented yet\n";
  return 2;
}

}  // namespace tidegate::cli
