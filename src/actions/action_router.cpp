#include "edgelink/actions/action_router.hpp"

#include "edgelink/apps/app_message.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace edgelink {
namespace {

// Ids are strings in uplink; integer ids are accepted and kept as their decimal text.
bool read_id(const rapidjson::Value& v, std::string& out) {
  if (v.IsString()) {
    out.assign(v.GetString(), v.GetStringLength());
    return !out.empty();
  }
  if (v.IsUint64()) {
    out = std::to_string(v.GetUint64());
    return true;
  }
  if (v.IsInt64()) {
    out = std::to_string(v.GetInt64());
    return true;
  }
  return false;
}

}  // namespace

std::variant<CloudAction, InvalidAction> parse_action(std::string_view message) {
  if (message.size() > kMaxActionBytes)
    return InvalidAction{"", "message of " + std::to_string(message.size()) + " bytes is over the " +
                                 std::to_string(kMaxActionBytes) + "-byte limit"};
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(message.data(), message.size());
  if (doc.HasParseError())
    return InvalidAction{"", std::string("not JSON (") + rapidjson::GetParseError_En(doc.GetParseError()) +
                                 " at offset " + std::to_string(doc.GetErrorOffset()) + ")"};
  if (!doc.IsObject()) return InvalidAction{"", "not a JSON object"};
  // RapidJSON decodes a lone surrogate escape ("\udc00") into bytes that are not
  // UTF-8 and would pass them on to the app; the strict scanner refuses them.
  if (!is_valid_json(message))
    return InvalidAction{"", "not valid JSON text (a lone surrogate escape, or nested more than 64 deep)"};

  CloudAction action;
  auto id_it = doc.FindMember("action_id");
  if (id_it == doc.MemberEnd()) id_it = doc.FindMember("id");
  if (id_it == doc.MemberEnd()) return InvalidAction{"", "no action_id"};
  if (!read_id(id_it->value, action.id)) return InvalidAction{"", "action_id must be a non-empty string"};

  auto name_it = doc.FindMember("name");
  if (name_it == doc.MemberEnd()) return InvalidAction{action.id, "no name"};
  if (!name_it->value.IsString() || name_it->value.GetStringLength() == 0)
    return InvalidAction{action.id, "name must be a non-empty string"};
  action.name.assign(name_it->value.GetString(), name_it->value.GetStringLength());

  auto payload_it = doc.FindMember("payload");
  if (payload_it != doc.MemberEnd()) {
    if (payload_it->value.IsString()) {
      action.payload.assign(payload_it->value.GetString(), payload_it->value.GetStringLength());
    } else if (!payload_it->value.IsNull()) {
      rapidjson::StringBuffer buf;
      rapidjson::Writer<rapidjson::StringBuffer> w(buf);
      payload_it->value.Accept(w);
      action.payload.assign(buf.GetString(), buf.GetSize());
    }
  }
  return action;
}

std::string action_line(const CloudAction& action) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("action_id");
  w.String(action.id.data(), action.id.size());
  w.Key("name");
  w.String(action.name.data(), action.name.size());
  w.Key("payload");
  w.String(action.payload.data(), action.payload.size());
  w.EndObject();
  std::string line(buf.GetString(), buf.GetSize());
  line += '\n';
  return line;
}

std::string status_payload(uint32_t sequence, uint64_t timestamp_ms, std::string_view action_id,
                           std::string_view state, int progress, const std::vector<std::string>& errors) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartArray();
  w.StartObject();
  w.Key("sequence");
  w.Uint(sequence);
  w.Key("timestamp");
  w.Uint64(timestamp_ms);
  w.Key("action_id");
  w.String(action_id.data(), action_id.size());
  w.Key("state");
  w.String(state.data(), state.size());
  w.Key("progress");
  w.Int(progress);
  w.Key("errors");
  w.StartArray();
  for (const auto& e : errors) w.String(e.data(), e.size());
  w.EndArray();
  w.EndObject();
  w.EndArray();
  return std::string(buf.GetString(), buf.GetSize());
}

std::variant<CancelRoute, std::string> route_cancel(const CloudAction& cancel, const ActionTracker& tracker) {
  rapidjson::Document doc;
  doc.Parse(cancel.payload.data(), cancel.payload.size());
  std::string target;
  if (doc.HasParseError() || !doc.IsObject())
    return std::string(
        "Invalid cancel_action: payload must be a JSON object like {\"action_id\": \"842\", "
        "\"name\": \"update_firmware\"}");
  auto id_it = doc.FindMember("action_id");
  if (id_it == doc.MemberEnd() || !read_id(id_it->value, target))
    return std::string("Invalid cancel_action: payload has no action_id naming the action to cancel");
  const TrackedAction* running = tracker.find(target);
  if (!running)
    return "Cannot cancel action " + target + ": it is not in flight (it finished, timed out or never arrived)";
  // The payload's "name" is not checked: uplink accepts a cancellation naming the action
  // before a redirection, so the id alone identifies the target.
  return CancelRoute{running->app, target, running->deadline + kCancelGrace};
}

ActionRouter::ActionRouter(const Config& config) {
  for (const auto& [app_name, app] : config.tcpapps)
    for (const auto& action : app.actions) routes_[action.name] = Route{app_name, action.timeout};
}

const ActionRouter::Route* ActionRouter::route(const std::string& name) const {
  auto it = routes_.find(name);
  return it == routes_.end() ? nullptr : &it->second;
}

}  // namespace edgelink
