#pragma once
// Pushing a stored file to a device (spec/xstream.md §7.3), over an rtstream session or an
// OKTO upload into its file system (ricrest.md §5.5, §5.9, §6.1.3). Pure like RtStream: it
// sends through a DeviceLink it is given, time is passed in, and the owner routes the
// link's msgNum-0 notices to on_notice() and drives on_tick()/next_deadline().
//
// rtstream: ufStart with fileLen = total, then blocks of <= 475 bytes at positions equal
// to file offsets, one in flight; a block with no complaint within `block_window` counts
// as taken. A BUSY or POS_MISMATCH cannot be repaired by moving positions (the endpoint
// writes at filePos) and a "fail" closes the session, so each makes the push wait
// `restart_backoff`, send ufStart again with the same fileName (position 0) and send from
// offset 0, at most `restarts` times. Success: the end-of-stream sokto equal to total
// within `end_wait` of the last block. A block lost on the link goes unnoticed (§6.1.3).
//
// fs: ufStart with batchMsgSize 500 / batchAckSize 10; one block, then batches of what
// the reply granted, go-back-N from each okto, at most `okto_wait` per okto; ufEnd after
// okto = total. A ufCancel notice or a write-failure reply ends it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "edgelink/devices/device_link.hpp"
#include "edgelink/devices/ricrest.hpp"

namespace edgelink::devices {

enum class PushType { Rtstream, Fs };

struct DevicePushSpec {
  std::string device;     // for messages: "device mcu1: FileWriteFailed"
  std::string file_name;
  std::string endpoint;   // rtstream
  PushType type = PushType::Rtstream;
  uint64_t total = 0;     // 1..16777215
  uint32_t restarts = 3;  // rtstream restarts allowed
};

struct DevicePushOptions {
  std::chrono::milliseconds block_window{100};
  std::chrono::milliseconds restart_backoff{50};
  std::chrono::milliseconds end_wait{2000};
  std::chrono::milliseconds okto_wait{30000};
  std::chrono::milliseconds refused_retry{20};  // the transport queue was full
  uint32_t batch_msg_size = 500;   // requested (reference client)
  uint32_t batch_ack_size = 10;
};

struct DevicePushCallbacks {
  // Bytes of the file at offset, exactly out.size() of them; false: cannot be read.
  std::function<bool(uint64_t offset, std::span<uint8_t> out)> read;
  std::function<void(uint64_t bytes)> progress;  // bytes the device has taken
  std::function<void(bool ok, std::string detail)> done;  // once
};

class DevicePush {
 public:
  using TimePoint = DeviceLink::TimePoint;

  DevicePush(DeviceLink& link, DevicePushSpec spec, DevicePushOptions options, DevicePushCallbacks callbacks);
  ~DevicePush();  // forgets its outstanding request; calls nothing
  DevicePush(const DevicePush&) = delete;
  DevicePush& operator=(const DevicePush&) = delete;

  void start(TimePoint now);
  // A msgNum-0 notice of the device; true when it was this push's.
  bool on_notice(const DeviceReply& reply);
  void on_tick(TimePoint now);
  std::optional<TimePoint> next_deadline() const;
  // The transport went down or the device reset: the push fails ("offline" / "reset").
  void on_link_lost(std::string_view why);

  bool finished() const { return state_ == State::Done; }
  uint8_t stream_id() const { return stream_id_; }
  uint32_t restarts_used() const { return restarts_used_; }

 private:
  enum class State { Idle, Starting, Sending, Ending, Backoff, Closing, Done };

  void send_ufstart(TimePoint now);
  void on_ufstart(uint64_t generation, const RequestResult& r);
  void send_blocks(TimePoint now);
  bool send_block(uint64_t pos, size_t len);
  void restart(TimePoint now, const std::string& why);
  void send_ufend(TimePoint now);
  void finish(bool ok, std::string detail);
  void advance(uint64_t taken);

  DeviceLink& link_;
  DevicePushSpec spec_;
  DevicePushOptions options_;
  DevicePushCallbacks callbacks_;
  State state_ = State::Idle;
  uint8_t stream_id_ = 0;
  uint64_t generation_ = 0;
  uint8_t request_msg_ = 0;
  uint32_t restarts_used_ = 0;
  std::optional<TimePoint> due_;  // next action (block window end, backoff end, end wait, okto wait)
  bool due_now_ = false;          // state changed without a clock: act at the next tick

  // rtstream: the block in flight; fs: the batch.
  uint64_t pos_ = 0;         // next byte to send
  uint64_t taken_ = 0;       // bytes the device has (rtstream: window passed; fs: okto)
  size_t inflight_len_ = 0;  // rtstream
  uint32_t block_size_ = 475;
  uint32_t batch_ = 1;       // fs: blocks per okto (the first batch is 1 block)
  uint32_t batch_granted_ = 10;
  bool refused_ = false;
  bool ufend_sent_ = false;
  std::vector<uint8_t> buf_;
};

}  // namespace edgelink::devices
