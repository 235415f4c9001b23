// [http] (spec/http-api.md §1): the local HTTP API's listener, limits and JWT key.

#include "config_loader.hpp"
#include "edgelink/http/jwt.hpp"

namespace edgelink::config_detail {

void Loader::load_http(const toml::table& t, HttpConfig& h) {
  h.enabled = true;
  bool loopback = true;
  const toml::key* bind_key = nullptr;
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string path = "http." + key;
    if (key == "enabled") {
      assign(h.enabled, bool_value(v, path));
    } else if (key == "bind") {
      if (listen_value(v, path, 17917, h.bind, h.host, h.port, loopback)) bind_key = &k;
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
      assign(h.copost_timeout, timeout_value(v, path));
    } else if (key == "obget_establish_timeout") {
      assign(h.obget_establish_timeout, timeout_value(v, path));
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

// Shared by [http] and [rtio].
bool Loader::listen_value(const toml::node& v, const std::string& path, uint16_t example_port, std::string& bind,
                          std::string& host, uint16_t& port, bool& loopback) {
  auto b = string_value(v, path);
  if (!b) return false;
  std::string h;
  uint16_t p = 0;
  bool lo = true;
  if (!split_bind(*b, h, p, lo)) {
    const std::string e = std::to_string(example_port);
    error(v, path + ": must be \"ADDRESS:PORT\" with an IP address literal (\"127.0.0.1:" + e + "\", \"[::1]:" + e +
                 "\"), got " + quote(*b));
    return false;
  }
  bind = *b;
  host = h;
  port = p;
  loopback = lo;
  return true;
}

std::optional<Millis> Loader::timeout_value(const toml::node& v, const std::string& path) {
  auto d = duration_value(v, path);
  if (d && (*d < Millis{100} || *d > Millis{3600 * 1000})) {
    error(v, path + ": must be a number of seconds from 0.1 to 3600, got " +
                 float_text(static_cast<double>(d->count()) / 1000.0));
    d.reset();
  }
  return d;
}

}  // namespace edgelink::config_detail
