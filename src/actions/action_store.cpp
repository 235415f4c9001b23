#include "edgelink/actions/action_store.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace edgelink {

std::string encode_actions(const std::vector<PersistedAction>& actions) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("version");
  w.Uint(1);
  w.Key("actions");
  w.StartArray();
  for (const auto& a : actions) {
    w.StartObject();
    w.Key("id");
    w.String(a.id.data(), static_cast<rapidjson::SizeType>(a.id.size()));
    w.Key("name");
    w.String(a.name.data(), static_cast<rapidjson::SizeType>(a.name.size()));
    w.Key("app");
    w.String(a.app.data(), static_cast<rapidjson::SizeType>(a.app.size()));
    w.Key("deadline_ms");
    w.Uint64(a.deadline_ms);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  std::string out(buf.GetString(), buf.GetSize());
  out += '\n';
  return out;
}

ParsedActions parse_actions(std::string_view text) {
  ParsedActions r;
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseStopWhenDoneFlag>(text.data(), text.size());
  if (doc.HasParseError()) {
    r.error = std::string("not JSON (") + rapidjson::GetParseError_En(doc.GetParseError()) + " at byte " +
              std::to_string(doc.GetErrorOffset()) + ")";
    return r;
  }
  if (!doc.IsObject() || !doc.HasMember("version") || !doc["version"].IsUint() || !doc.HasMember("actions") ||
      !doc["actions"].IsArray()) {
    r.error = "not an actions file (needs \"version\" and an \"actions\" array)";
    return r;
  }
  if (doc["version"].GetUint() != 1) {
    r.error = "version " + std::to_string(doc["version"].GetUint()) + " is newer than this edgelink understands";
    return r;
  }
  auto text_of = [](const rapidjson::Value& v, const char* key, std::string& out) {
    auto it = v.FindMember(key);
    if (it == v.MemberEnd() || !it->value.IsString() || it->value.GetStringLength() == 0) return false;
    out.assign(it->value.GetString(), it->value.GetStringLength());
    return true;
  };
  for (const auto& v : doc["actions"].GetArray()) {
    PersistedAction a;
    if (!v.IsObject() || !text_of(v, "id", a.id) || !text_of(v, "name", a.name) || !text_of(v, "app", a.app) ||
        !v.HasMember("deadline_ms") || !v["deadline_ms"].IsUint64()) {
      ++r.skipped;
      continue;
    }
    a.deadline_ms = v["deadline_ms"].GetUint64();
    r.actions.push_back(std::move(a));
  }
  return r;
}

}  // namespace edgelink
