// [http] (spec/http-api.md §1): the local HTTP API's listener, limits and JWT key.

#include <arpa/inet.h>

#include <array>

#include "config_loader.hpp"
#include "edgelink/http/jwt.hpp"

namespace edgelink::config_detail {
namespace {

// "127.0.0.1:17917" or "[::1]:17917": an address literal and a port. Host names are
// refused: what a listener binds to should not depend on a resolver at start-up.
bool split_bind(const std::string& bind, std::string& host, uint16_t& port, bool& loopback) {
  std::string port_text;
  if (!bind.empty() && bind.front() == '[') {
    const auto close = bind.find(']');
    if (close == std::string::npos || close + 1 >= bind.size() || bind[close + 1] != ':') return false;
    host = bind.substr(1, close - 1);
    port_text = bind.substr(close + 2);
    std::array<unsigned char, 16> a{};
    if (::inet_pton(AF_INET6, host.c_str(), a.data()) != 1) return false;
    static constexpr std::array<unsigned char, 16> kLoop{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    loopback = a == kLoop;
  } else {
    const auto colon = bind.rfind(':');
    if (colon == std::string::npos) return false;
    host = bind.substr(0, colon);
    port_text = bind.substr(colon + 1);
    std::array<unsigned char, 4> a{};
    if (::inet_pton(AF_INET, host.c_str(), a.data()) != 1) return false;
    loopback = a[0] == 127;
  }
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  const unsigned long p = std::stoul(port_text);
  if (p < 1 || p > 65535) return false;
  port = static_cast<uint16_t>(p);
  return true;
}

}  // namespace

void Loader::load_http(const toml::table& t, HttpConfig& h) {
  h.enabled = true;
  bool loopback = true;
  const toml::key* bind_key = nullptr;
  auto timeout = [&](const toml::node& v, const std::string& path, Millis& target) {
    auto d = duration_value(v, path);
    if (d && (*d < Millis{100} || *d > Millis{3600 * 1000})) {
      error(v, path + ": must be a number of seconds from 0.1 to 3600, got " + float_text(static_cast<double>(d->count()) / 1000.0));
      d.reset();
    }
    assign(target, d);
  };
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string path = "http." + key;
    if (key == "enabled") {
      assign(h.enabled, bool_value(v, path));
    } else if (key == "bind") {
      if (auto b = string_value(v, path)) {
        std::string host;
        uint16_t port = 0;
        if (split_bind(*b, host, port, loopback)) {
          h.bind = *b;
          h.host = host;
          h.port = port;
          bind_key = &k;
        } else {
          error(v, path + ": must be \"ADDRESS:PORT\" with an IP address literal (\"127.0.0.1:17917\", "
                          "\"[::1]:17917\"), got " + quote(*b));
        }
      }
    } else if (key == "jwt_public_key") {
      if (auto p = string_value(v, path)) {
        std::string why;
        if (!http::JwtVerifier::from_pem_file(*p, why))
          error(v, path + ": " + why);
        else
          h.jwt_public_key = *p;
      }
    } else if (key == "cors_allow_origin") {
      auto o = string_value(v, path, true);
      if (o && o->find_first_of("\r\n") != std::string::npos) {
        error(v, path + ": must not contain line breaks (it becomes a header value)");
        o.reset();
      }
      assign(h.cors_allow_origin, o);
    } else if (key == "copost_timeout") {
      timeout(v, path, h.copost_timeout);
    } else if (key == "obget_establish_timeout") {
      timeout(v, path, h.obget_establish_timeout);
    } else if (key == "max_coposts_per_device") {
      assign(h.max_coposts_per_device, int_as<uint32_t>(v, path, 1, 255));
    } else if (key == "max_observers_per_device") {
      assign(h.max_observers_per_device, int_as<uint32_t>(v, path, 1, 256));
    } else if (key == "observer_queue_frames") {
      assign(h.observer_queue_frames, int_as<uint32_t>(v, path, 1, 1024));
    } else if (key == "max_connections") {
      assign(h.max_connections, int_as<uint32_t>(v, path, 1, 4096));
    } else {
      unknown(k, "in [http]");
    }
  }
  // Without a key, whoever reaches the port can drive the devices (§1).
  if (h.enabled && !loopback && h.jwt_public_key.empty() && bind_key)
    warn(*bind_key, "http.bind: " + h.bind +
                        " is not a loopback address and http.jwt_public_key is not set: anyone who can reach "
                        "this port can send requests to the devices");
}

// The first path segment of an HTTP request names a device; these name endpoints.
void Loader::check_reserved_devices(const toml::table& root, const Config& c) {
  const auto* devices = root.get_as<toml::table>("devices");
  if (!devices) return;
  for (const char* reserved : {"status", "metrics", "healthz"}) {
    if (!c.devices.count(reserved)) continue;
    const toml::node* at = devices->get(reserved);
    error(at ? *at : *devices, std::string("devices.") + reserved + ": the name " + quote(reserved) +
                                   " is reserved for the HTTP API's endpoint /" + reserved);
  }
}

}  // namespace edgelink::config_detail
