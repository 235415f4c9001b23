// DeviceHub: pushing x-stream uploads to a device (spec/xstream.md §7.3) with a
// DevicePush on the device's link. One push per device at a time (UploadStore queues them).

#include "device_hub_state.hpp"

namespace edgelink::devices {
namespace {
constexpr char kLog[] = "devices";
using Clock = std::chrono::steady_clock;
}  // namespace

std::shared_ptr<void> DeviceHub::push_file(const uploads::PushJob& job, uploads::PushCallbacks callbacks) {
  auto it = devices_.find(job.device);
  if (it == devices_.end()) return nullptr;
  Device& d = *it->second;
  const uint64_t id = next_id_++;
  std::weak_ptr<Device> weak = it->second;
  // Destroying the handle abandons the push (the device keeps what it has).
  std::shared_ptr<void> handle(new int(0), [weak, id](int* p) {
    delete p;
    if (auto dev = weak.lock(); dev && dev->push_id == id) {
      dev->push_id = 0;
      dev->push.reset();
    }
  });
  auto done = [this, weak, id, cb = callbacks.done, alive = std::weak_ptr<int>(alive_)](bool ok, std::string detail) {
    // Posted: the push may be deep in a link callback, and the owner may start the next.
    asio::post(io_, [weak, id, cb, ok, detail = std::move(detail), alive] {
      if (alive.expired()) return;
      auto dev = weak.lock();
      if (!dev || dev->push_id != id) return;  // abandoned meanwhile
      dev->push_id = 0;
      if (dev->push) dev->push_restarts += dev->push->restarts_used();
      dev->push.reset();
      ++(ok ? dev->pushes_ok : dev->pushes_failed);
      if (cb) cb(ok, detail);
    });
  };
  d.push_id = id;
  if (d.stopped || !d.up) {
    log::warn(kLog, d.config.name, ": upload ", job.key, " not pushed: the device is offline");
    done(false, "device " + d.config.name + ": offline");
    return handle;
  }
  DevicePushSpec spec;
  spec.device = d.config.name;
  spec.file_name = job.file_name;
  spec.endpoint = job.endpoint;
  spec.type = job.file_type == DeviceFileType::Fs ? PushType::Fs : PushType::Rtstream;
  spec.total = job.total;
  spec.restarts = job.restarts;
  DevicePushOptions options;
  options.block_window = rtstream_block_window(d.config, std::max<size_t>(d.streams.size(), 1) + 1);
  DevicePushCallbacks cb;
  cb.read = std::move(callbacks.read);
  cb.progress = std::move(callbacks.progress);
  cb.done = std::move(done);
  log::info(kLog, d.config.name, ": pushing upload ", job.key, " (", job.total, " bytes) as ",
            spec.type == PushType::Fs ? "an OKTO file upload" : "an rtstream to endpoint " + job.endpoint, ", file ",
            job.file_name);
  d.push = std::make_unique<DevicePush>(d.sessions->link(), std::move(spec), options, std::move(cb));
  d.push->start(Clock::now());
  if (!d.ticking) rearm(d);
  return handle;
}

// The link went down or the device reset: a push cannot go on (its session is gone).
void DeviceHub::end_push(Device& d, std::string_view why) {
  if (d.push) d.push->on_link_lost(why);
}

}  // namespace edgelink::devices
