// discovery/endpoint_list.h — endpoint lists written as YAML: the `endpoints:` section of the
// gateway's config file and the file the `file` discovery source watches.
//
// Contract: a list item is "host:port" (optionally http:// or https://) or a map {address,
// engine, metrics_port, metrics_path}; anything else, an unknown key or a bad value is an error
// naming the item. ParseEndpointText() splits "a:1,b:2" / "a:1;b:2" / whitespace-separated
// lists. LoadEndpointFile() reads a file that is either such a list or a map whose `endpoints`
// key is one (an empty file or an empty list is an empty set). EndpointsAt() builds the set a
// source found at addresses and ports.
// Thread-safety: pure functions (LoadEndpointFile reads the file system).
#pragma once

#include <string>
#include <vector>

#include "pool/endpoint.h"

namespace YAML {
class Node;
}

namespace tidegate::discovery {

std::string ParseEndpointList(const YAML::Node& list, std::vector<pool::EndpointConfig>* out);
std::string ParseEndpointText(const std::string& text, std::vector<pool::EndpointConfig>* out);
std::string LoadEndpointFile(const std::string& path, std::vector<pool::EndpointConfig>* out);
// Endpoints at these (address, port) pairs, all read with the same metrics settings (what the
// dns and kubernetes sources find).
std::vector<pool::EndpointConfig> EndpointsAt(
    const std::vector<std::pair<std::string, uint16_t>>& addresses, const std::string& engine,
    uint16_t metrics_port);

}  // namespace tidegate::discovery
