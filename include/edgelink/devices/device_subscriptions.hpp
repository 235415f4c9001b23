#pragma once
// One device's StatePublisher subscriptions (ricrest.md §7.3–§7.4, http-api.md §5.3),
// shared by everything that wants a topic: HTTP observers of /pub/<topic> and the
// configured [[devices.NAME.publish]] mappings. The device keeps one subscription per
// topic and channel, so each topic is asked for once, with the highest rateHz and the
// lowest minMs of its current users and the trigger of its first.
//
// Pure: it sends nothing and calls nobody. The owner
//  * takes the updates to send from next_update() and hands each one's outcome back
//    (on_update_result / on_update_refused), one update in flight per topic;
//  * tells it of resets (subscriptions are lost; the users stay and are subscribed
//    again) and of the link going down (observers end with DEVICEID_OFFLINE);
//  * asks route() which users a publish frame is for;
//  * drains take_events() after each call and tells the users.
//
// A user is established when an `ok` reply that lists its topic answers an update
// asking for at least its rate, or at once when the subscription already stands at
// such a rate. A failed update ends the users still waiting for it (NOT_FOUND,
// INTERNAL_SERVER_ERROR with the reply, DEVICEID_TIMEOUT), and every user when nothing
// stands on the device any more (after a reset); the established users of a standing
// subscription keep it. Persistent users (the mappings) never end: they get a Failed
// event and the topic is not asked again until a reset, a link-up or a change of its
// users, so an unknown topic cannot make a request loop.

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "edgelink/devices/device_link.hpp"
#include "edgelink/devices/ricrest.hpp"
#include "edgelink/http/device_access.hpp"

namespace edgelink::devices {

// What one user asks of a topic (http-api.md §5.3 defaults).
struct SubscriptionAsk {
  double rate_hz = 1.0;  // > 0
  uint32_t min_ms = 50;
  std::string trigger = "timeorchange";
  bool operator==(const SubscriptionAsk&) const = default;
};

struct SubscriptionEvent {
  enum class Kind {
    Established,  // the user now gets the topic's publishes
    Ended,        // final (`code`, `data`); the user is gone from the table
    Failed,       // a persistent user's update failed (`code`, `data`); it stays
  };
  Kind kind = Kind::Established;
  uint64_t user = 0;
  http::Code code = http::Code::Ok;
  std::string data;  // the reply JSON (or bytes) where the code has one
};

// An update to send: COMMAND_FRAME `json`, idempotent (a repeated update is harmless).
struct SubscriptionUpdate {
  uint64_t token = 0;  // hand it back with the outcome
  std::string topic;
  PubRec rec;  // what it asks for; rate_hz 0 ends the subscription
  std::string json;
};

struct DeviceSubscriptionsCounters {
  uint64_t updates = 0;        // updates handed out
  uint64_t updates_ok = 0;     // ok replies listing the topic
  uint64_t not_found = 0;      // ok replies without the topic (unknown to the device)
  uint64_t failed = 0;         // fail or undecodable replies, refused requests
  uint64_t timeouts = 0;       // the link gave up
  uint64_t routed = 0;         // publish frames given to at least one user
  uint64_t unrouted = 0;       // publish frames no established user wanted
};

class DeviceSubscriptions {
 public:
  // `user` ids are the owner's and unique. A user already standing is established at
  // once (an Established event is queued).
  void add(uint64_t user, std::string topic, SubscriptionAsk ask, bool persistent);
  // Removes a user (no event). The topic is then updated to its remaining users' values,
  // or to rateHz 0 when none is left. False when the user is unknown (already ended).
  bool remove(uint64_t user);

  // The next update to send now, if any (it counts as in flight from here).
  std::optional<SubscriptionUpdate> next_update();
  // The reply (or link error) for an update; stale tokens are ignored.
  void on_update_result(uint64_t token, const RequestResult& result);
  // The link refused to send it (TooManyPending, Unencodable).
  void on_update_refused(uint64_t token, LinkError error);

  // The device lost its subscriptions (restart, reconnect): nothing stands, nothing is
  // in flight; every topic with users is asked again by next_update().
  void on_device_reset();
  // The transport went: non-persistent users end with DEVICEID_OFFLINE; persistent
  // users wait for the next link-up.
  void on_link_down();

  // The established users a publish payload (the bytes after the 2-byte header) is for:
  // by topic index (`_t` of a JSON payload, byte 1 of a devbin one) against the `idx`
  // of the subscription replies; every topic's users when the payload has no readable
  // index.
  std::vector<uint64_t> route(std::span<const uint8_t> payload);

  std::vector<SubscriptionEvent> take_events();

  bool has_user(uint64_t user) const { return user_topic_.count(user) > 0; }
  bool established(uint64_t user) const;
  // What the device was last told and confirmed for `topic` (none: nothing stands).
  std::optional<PubRec> standing(std::string_view topic) const;
  std::optional<int> topic_index(std::string_view topic) const;
  size_t user_count() const { return user_topic_.size(); }
  const DeviceSubscriptionsCounters& counters() const { return counters_; }

 private:
  struct User {
    uint64_t id = 0;
    SubscriptionAsk ask;
    bool persistent = false;
    bool established = false;
    bool asked = false;  // an update sent since it joined includes its values
  };
  struct Topic {
    std::vector<User> users;  // in join order: the first one's trigger counts
    std::optional<PubRec> standing;
    std::optional<int> idx;
    std::optional<SubscriptionUpdate> inflight;  // token and values
    bool blocked = false;  // the last update failed: wait for a reset or a user change
  };

  std::optional<PubRec> wanted(const std::string& name, const Topic& t) const;
  void fail(Topic& t, http::Code code, std::string data);
  void drop_if_idle(std::map<std::string, Topic, std::less<>>::iterator it);
  const User* find_user(uint64_t user) const;

  std::map<std::string, Topic, std::less<>> topics_;
  std::map<uint64_t, std::string> user_topic_;
  std::vector<SubscriptionEvent> events_;
  uint64_t next_token_ = 1;
  DeviceSubscriptionsCounters counters_;
};

// The topic index of a publish payload, if it has a readable one.
std::optional<int> publish_topic_index(std::span<const uint8_t> payload);

}  // namespace edgelink::devices
