#pragma once
// DeviceAccess over several kinds of device: a request goes to whichever side claims
// the id (RICREST devices by configured name, RTIO devices by their 36-character id;
// config keeps the two sets apart). HttpApi sees one DeviceAccess.

#include <asio.hpp>

#include <vector>

#include "edgelink/http/device_access.hpp"

namespace edgelink::http {

class DeviceRouter : public DeviceAccess {
 public:
  explicit DeviceRouter(std::vector<DeviceAccess*> sides) : sides_(std::move(sides)) {}

  DeviceKind kind(std::string_view device) const override {
    const DeviceAccess* s = side(device);
    return s ? s->kind(device) : DeviceKind::None;
  }
  bool link_up(std::string_view device) const override {
    const DeviceAccess* s = side(device);
    return s && s->link_up(device);
  }
  Code check(std::string_view device, Method method, std::string_view uri, std::string_view data) const override {
    const DeviceAccess* s = side(device);
    return s ? s->check(device, method, uri, data) : Code::DeviceIdOffline;
  }
  std::unique_ptr<Pending> copost(std::string_view device, std::string_view uri, std::string_view data,
                                  std::function<void(Frame)> done) override {
    // HttpApi asks only for devices kind() named, so a side always exists here.
    return side(device)->copost(device, uri, data, std::move(done));
  }
  std::unique_ptr<Pending> obget(std::string_view device, std::string_view uri, std::string_view data,
                                 ObserveCallbacks callbacks) override {
    return side(device)->obget(device, uri, data, std::move(callbacks));
  }

 private:
  DeviceAccess* side(std::string_view device) const {
    for (DeviceAccess* s : sides_)
      if (s->kind(device) != DeviceKind::None) return s;
    return nullptr;
  }
  std::vector<DeviceAccess*> sides_;
};

}  // namespace edgelink::http
