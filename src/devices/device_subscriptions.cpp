#include "edgelink/devices/device_subscriptions.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <limits>
#include <utility>

namespace edgelink::devices {
namespace {

bool same(const PubRec& a, const PubRec& b) {
  return a.name == b.name && a.trigger == b.trigger && a.rate_hz == b.rate_hz && a.min_ms == b.min_ms;
}

}  // namespace

std::optional<int> publish_topic_index(std::span<const uint8_t> payload) {
  if (payload.empty()) return std::nullopt;
  if (payload[0] == '{') {
    rapidjson::Document doc;
    doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(
        reinterpret_cast<const char*>(payload.data()), payload.size());
    if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
    const auto t = doc.FindMember("_t");
    if (t == doc.MemberEnd() || !t->value.IsUint() || t->value.GetUint() > std::numeric_limits<int>::max())
      return std::nullopt;
    return static_cast<int>(t->value.GetUint());
  }
  // devbin (§7.4): byte 0 is the magic/version 0xDB..0xDF, byte 1 the topic index (0xFF: none).
  if (payload[0] >= 0xDB && payload[0] <= 0xDF && payload.size() >= 2 && payload[1] != 0xFF) return payload[1];
  return std::nullopt;
}

const DeviceSubscriptions::User* DeviceSubscriptions::find_user(uint64_t user) const {
  const auto at = user_topic_.find(user);
  if (at == user_topic_.end()) return nullptr;
  const auto& users = topics_.find(at->second)->second.users;
  const auto it = std::find_if(users.begin(), users.end(), [&](const User& u) { return u.id == user; });
  return it == users.end() ? nullptr : &*it;
}

bool DeviceSubscriptions::established(uint64_t user) const {
  const User* u = find_user(user);
  return u && u->established;
}

std::optional<PubRec> DeviceSubscriptions::standing(std::string_view topic) const {
  const auto it = topics_.find(topic);
  if (it == topics_.end()) return std::nullopt;
  return it->second.standing;
}

std::optional<int> DeviceSubscriptions::topic_index(std::string_view topic) const {
  const auto it = topics_.find(topic);
  if (it == topics_.end()) return std::nullopt;
  return it->second.idx;
}

void DeviceSubscriptions::add(uint64_t user, std::string topic, SubscriptionAsk ask, bool persistent) {
  Topic& t = topics_[topic];
  t.blocked = false;  // a new user may ask again what failed before
  User u;
  u.id = user;
  u.persistent = persistent;
  // Already standing at a sufficient rate, and not about to be lowered: nothing to wait for.
  u.established = t.standing && t.standing->rate_hz >= ask.rate_hz &&
                  (!t.inflight || t.inflight->rec.rate_hz >= ask.rate_hz);
  u.asked = u.established;
  u.ask = std::move(ask);
  if (u.established) events_.push_back({SubscriptionEvent::Kind::Established, user, http::Code::Ok, {}});
  t.users.push_back(std::move(u));
  user_topic_[user] = std::move(topic);
}

bool DeviceSubscriptions::remove(uint64_t user) {
  const auto at = user_topic_.find(user);
  if (at == user_topic_.end()) return false;
  const auto it = topics_.find(at->second);
  user_topic_.erase(at);
  auto& users = it->second.users;
  users.erase(std::remove_if(users.begin(), users.end(), [&](const User& u) { return u.id == user; }), users.end());
  it->second.blocked = false;  // the remaining users' values (or rateHz 0) go out
  drop_if_idle(it);
  return true;
}

void DeviceSubscriptions::drop_if_idle(std::map<std::string, Topic, std::less<>>::iterator it) {
  const Topic& t = it->second;
  if (t.users.empty() && !t.standing && !t.inflight) topics_.erase(it);
}

// Highest rate, lowest minMs, the first user's trigger (http-api.md §5.3).
std::optional<PubRec> DeviceSubscriptions::wanted(const std::string& name, const Topic& t) const {
  if (t.users.empty()) return std::nullopt;
  PubRec r;
  r.name = name;
  r.trigger = t.users.front().ask.trigger;
  r.rate_hz = 0;
  r.min_ms = std::numeric_limits<uint32_t>::max();
  for (const User& u : t.users) {
    r.rate_hz = std::max(r.rate_hz, u.ask.rate_hz);
    r.min_ms = std::min(r.min_ms, u.ask.min_ms);
  }
  return r;
}

std::optional<SubscriptionUpdate> DeviceSubscriptions::next_update() {
  for (auto& [name, t] : topics_) {
    if (t.inflight || t.blocked) continue;
    std::optional<PubRec> target = wanted(name, t);
    if (target) {
      if (t.standing && same(*t.standing, *target)) continue;
    } else {
      if (!t.standing) continue;
      target = *t.standing;  // the last user left: switch the topic off
      target->rate_hz = 0;
    }
    SubscriptionUpdate u;
    u.token = next_token_++;
    u.topic = name;
    u.rec = *target;
    u.json = subscription_json(std::span<const PubRec>(&u.rec, 1));
    for (User& user : t.users) user.asked = true;
    t.inflight = u;
    ++counters_.updates;
    return u;
  }
  return std::nullopt;
}

// Ends the users an update failed for: those it was asked for and still waiting, or all
// of them when nothing stands on the device. Persistent users stay (Failed), and the
// topic is not asked again until something changes, unless a user joined after the
// update went out (its own update is still to be tried).
void DeviceSubscriptions::fail(Topic& t, http::Code code, std::string data) {
  const bool nothing_stands = !t.standing;
  std::vector<User> kept;
  for (User& u : t.users) {
    const bool hit = u.asked && (!u.established || nothing_stands);
    if (!hit) {
      kept.push_back(std::move(u));
      continue;
    }
    if (u.persistent) {
      events_.push_back({SubscriptionEvent::Kind::Failed, u.id, code, data});
      u.established = false;
      kept.push_back(std::move(u));
    } else {
      events_.push_back({SubscriptionEvent::Kind::Ended, u.id, code, data});
      user_topic_.erase(u.id);
    }
  }
  t.users = std::move(kept);
  t.blocked = std::all_of(t.users.begin(), t.users.end(), [](const User& u) { return u.asked; });
}

void DeviceSubscriptions::on_update_result(uint64_t token, const RequestResult& result) {
  auto it = std::find_if(topics_.begin(), topics_.end(),
                         [&](const auto& e) { return e.second.inflight && e.second.inflight->token == token; });
  if (it == topics_.end()) return;  // forgotten by a reset or link-down
  Topic& t = it->second;
  const SubscriptionUpdate sent = std::move(*t.inflight);
  t.inflight.reset();
  const bool off = sent.rec.rate_hz <= 0;
  switch (result.error) {
    case LinkError::None: break;
    case LinkError::DeviceReset: drop_if_idle(it); return;  // the owner resets the table too; asked again then
    case LinkError::Timeout:
      ++counters_.timeouts;
      if (off) break;
      fail(t, http::Code::DeviceIdTimeout, {});
      drop_if_idle(it);
      return;
    case LinkError::BadReply:
    case LinkError::TooManyPending:
    case LinkError::Unencodable:
      ++counters_.failed;
      if (off) break;
      fail(t, http::Code::InternalServerError, result.json);
      drop_if_idle(it);
      return;
  }
  if (off) {
    // Whatever the reply, nothing should stand now (a failed switch-off is not retried:
    // nobody is left to want the publishes).
    t.standing.reset();
    drop_if_idle(it);
    return;
  }
  if (!result.ok() || !result.reply.ok()) {
    ++counters_.failed;
    fail(t, http::Code::InternalServerError, result.json);
    drop_if_idle(it);
    return;
  }
  const auto listed = std::find_if(result.reply.topics.begin(), result.reply.topics.end(),
                                   [&](const TopicIndex& ti) { return ti.name == sent.topic; });
  if (listed == result.reply.topics.end()) {
    // §7.3: the device skips unknown topics without an error.
    ++counters_.not_found;
    t.standing.reset();
    fail(t, http::Code::NotFound, {});
    drop_if_idle(it);
    return;
  }
  ++counters_.updates_ok;
  t.idx = listed->idx;
  t.standing = sent.rec;
  for (User& u : t.users) {
    if (u.established || u.ask.rate_hz > sent.rec.rate_hz) continue;  // a faster user waits for the next update
    u.established = true;
    events_.push_back({SubscriptionEvent::Kind::Established, u.id, http::Code::Ok, {}});
  }
}

void DeviceSubscriptions::on_update_refused(uint64_t token, LinkError error) {
  auto it = std::find_if(topics_.begin(), topics_.end(),
                         [&](const auto& e) { return e.second.inflight && e.second.inflight->token == token; });
  if (it == topics_.end()) return;
  Topic& t = it->second;
  const bool off = t.inflight->rec.rate_hz <= 0;
  t.inflight.reset();
  ++counters_.failed;
  if (!off) {
    fail(t, error == LinkError::TooManyPending ? http::Code::TooManyRequests
            : error == LinkError::Unencodable  ? http::Code::BadRequest
                                               : http::Code::InternalServerError,
         {});
  }
  drop_if_idle(it);
}

void DeviceSubscriptions::on_device_reset() {
  for (auto it = topics_.begin(); it != topics_.end();) {
    Topic& t = it->second;
    t.standing.reset();
    t.inflight.reset();
    t.blocked = false;
    // Established users stay so: observers continue once the topic is asked again.
    for (User& u : t.users) u.asked = false;
    auto next = std::next(it);
    drop_if_idle(it);
    it = next;
  }
}

void DeviceSubscriptions::on_link_down() {
  for (auto it = topics_.begin(); it != topics_.end();) {
    Topic& t = it->second;
    t.standing.reset();
    t.inflight.reset();
    t.blocked = false;
    std::vector<User> kept;
    for (User& u : t.users) {
      if (u.persistent) {
        u.established = false;
        u.asked = false;
        kept.push_back(std::move(u));
      } else {
        events_.push_back({SubscriptionEvent::Kind::Ended, u.id, http::Code::DeviceIdOffline, {}});
        user_topic_.erase(u.id);
      }
    }
    t.users = std::move(kept);
    auto next = std::next(it);
    drop_if_idle(it);
    it = next;
  }
}

std::vector<uint64_t> DeviceSubscriptions::route(std::span<const uint8_t> payload) {
  const std::optional<int> idx = publish_topic_index(payload);
  std::vector<uint64_t> out;
  for (const auto& [name, t] : topics_) {
    if (idx && t.idx != idx) continue;
    for (const User& u : t.users)
      if (u.established) out.push_back(u.id);
  }
  if (out.empty())
    ++counters_.unrouted;
  else
    ++counters_.routed;
  return out;
}

std::vector<SubscriptionEvent> DeviceSubscriptions::take_events() { return std::exchange(events_, {}); }

}  // namespace edgelink::devices
