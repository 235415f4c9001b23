#pragma once
// JSON pieces shared by the data-stream codecs: the app's control lines
// (ds_app_lines.cpp) and the MQTT header/chunk/trailer and rx lines (ds_codec.cpp).
// Internal to src/datastreams.

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <optional>
#include <string>
#include <string_view>

#include "edgelink/datastreams/ds_codec.hpp"

namespace edgelink::datastreams::json {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
using Value = rapidjson::Value;

inline std::string_view sv(const Value& v) { return {v.GetString(), v.GetStringLength()}; }

inline const Value* member(const Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

inline void str(Writer& w, std::string_view key, std::string_view value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

inline std::string line_of(const rapidjson::StringBuffer& buf) {
  std::string out(buf.GetString(), buf.GetSize());
  out += '\n';
  return out;
}

inline void write_attributes(Writer& w, const Attributes& attributes) {
  w.Key("attributes");
  w.StartObject();
  for (const auto& [k, v] : attributes) str(w, k, v);
  w.EndObject();
}

inline void write_text_meta(Writer& w, const TextMeta& m) {
  w.Key("text_meta");
  w.StartObject();
  str(w, "operation", m.operation);
  w.Key("version");
  w.Int64(m.version);
  str(w, "reply_to", m.reply_to);
  w.Key("attached");
  w.StartArray();
  for (const auto& a : m.attached) w.String(a.data(), static_cast<rapidjson::SizeType>(a.size()));
  w.EndArray();
  w.Key("generated");
  w.Bool(m.generated);
  w.EndObject();
}

// Attributes: an object of strings within §5's limits. An error message, or "".
inline std::string read_attributes(const Value* v, Attributes& out, bool& too_large) {
  too_large = false;
  if (!v) return {};
  if (!v->IsObject()) return "attributes must be an object of strings";
  for (auto m = v->MemberBegin(); m != v->MemberEnd(); ++m) {
    if (!m->value.IsString()) return "attributes must be an object of strings";
    const std::string_view k = sv(m->name), val = sv(m->value);
    if (k.empty() || k.size() > kMaxAttributeKey || val.size() > kMaxAttributeValue || out.size() >= kMaxAttributes) {
      too_large = true;
      return "attributes: at most 16 pairs, keys of 1..64 bytes, values of at most 512 bytes";
    }
    out.emplace_back(std::string(k), std::string(val));
  }
  return {};
}

inline std::optional<TextMeta> read_text_meta(const Value& v, std::string& error) {
  if (!v.IsObject()) {
    error = "text_meta must be an object";
    return std::nullopt;
  }
  TextMeta m;
  if (const Value* op = member(v, "operation")) {
    if (!op->IsString() || (sv(*op) != "create" && sv(*op) != "update" && sv(*op) != "delete" && sv(*op) != "reaction")) {
      error = "text_meta.operation must be create, update, delete or reaction";
      return std::nullopt;
    }
    m.operation = std::string(sv(*op));
  }
  if (const Value* ver = member(v, "version")) {
    if (!ver->IsInt64()) {
      error = "text_meta.version must be an integer";
      return std::nullopt;
    }
    m.version = ver->GetInt64();
  }
  if (const Value* rt = member(v, "reply_to")) {
    if (!rt->IsString()) {
      error = "text_meta.reply_to must be a string";
      return std::nullopt;
    }
    m.reply_to = std::string(sv(*rt));
  }
  if (const Value* at = member(v, "attached")) {
    if (!at->IsArray()) {
      error = "text_meta.attached must be an array of strings";
      return std::nullopt;
    }
    for (const auto& a : at->GetArray()) {
      if (!a.IsString()) {
        error = "text_meta.attached must be an array of strings";
        return std::nullopt;
      }
      m.attached.emplace_back(sv(a));
    }
  }
  if (const Value* g = member(v, "generated")) {
    if (!g->IsBool()) {
      error = "text_meta.generated must be a boolean";
      return std::nullopt;
    }
    m.generated = g->GetBool();
  }
  return m;
}

}  // namespace edgelink::datastreams::json
