#include "edgelink/devices/ricrest_access.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

namespace edgelink::devices {
namespace {

// Iterative: a deeply nested body must not exhaust the stack. Not full precision:
// RapidJSON 1.1's full-precision strtod hits undefined behaviour (clz of 0) on inputs
// like "0e055…5" (found by ricrest_access_fuzz); the default parse may differ in the
// last bit of a double, which a device's JSON never depends on.
constexpr unsigned kParseFlags = rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;

bool parse_object(rapidjson::Document& doc, std::string_view text) {
  doc.Parse<kParseFlags>(text.data(), text.size());
  return !doc.HasParseError() && doc.IsObject();
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), s.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
         });
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

}  // namespace

std::variant<CopostRequest, http::Code> translate_copost(std::string_view uri, std::string_view data) {
  if (uri.size() < 2 || uri[0] != '/') return http::Code::BadRequest;
  if (!std::all_of(uri.begin(), uri.end(), [](char c) { return c >= 0x21 && c <= 0x7E; }))
    return http::Code::BadRequest;
  const std::string_view path = uri.substr(1);
  // The device names an endpoint by its first path segment, case-insensitively (§4.9);
  // subscriptions are edgelink's (obget /pub/<topic>).
  const std::string_view first = path.substr(0, path.find_first_of("/?"));
  if (first.size() == 12 && starts_with_nocase(first, "subscription")) return http::Code::MethodNotAllowed;
  if (data.empty()) return CopostRequest{RequestKind::Url, std::string(path)};

  if (path.find('?') != std::string_view::npos) return http::Code::BadRequest;
  // File and stream sessions are edgelink's (the device takes uf*/df* as session
  // commands; it tests the prefix case-sensitively, edgelink refuses any case).
  if (starts_with_nocase(path, "uf") || starts_with_nocase(path, "df")) return http::Code::BadRequest;
  rapidjson::Document doc;
  if (!parse_object(doc, data) || doc.HasMember("cmdName")) return http::Code::BadRequest;
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("cmdName");
  w.String(path.data(), static_cast<rapidjson::SizeType>(path.size()));
  for (const auto& m : doc.GetObject()) {
    w.Key(m.name.GetString(), m.name.GetStringLength());
    m.value.Accept(w);
  }
  w.EndObject();
  return CopostRequest{RequestKind::CommandFrame, std::string(buf.GetString(), buf.GetSize())};
}

http::Frame copost_reply(const RequestResult& result) {
  switch (result.error) {
    case LinkError::None:
    case LinkError::BadReply: break;
    case LinkError::Timeout: return {http::Code::RequestTimeout, {}};
    // The link went down, or the device announced a restart: either way the device went
    // away before it replied (§4.6: "the link dropped during the request").
    case LinkError::DeviceReset: return {http::Code::DeviceIdOffline, {}};
    case LinkError::TooManyPending: return {http::Code::TooManyRequests, {}};
    case LinkError::Unencodable: return {http::Code::BadRequest, {}};
  }
  // Read rslt and error here rather than trusting the link's parse: a reply whose other
  // fields the link finds odd (BadReply) is still the device's JSON answer.
  rapidjson::Document doc;
  if (!parse_object(doc, result.json)) return {http::Code::InternalServerError, result.json};
  const auto rslt = doc.FindMember("rslt");
  if (rslt == doc.MemberEnd()) return {http::Code::Ok, result.json};  // no rslt counts as ok (§4.8)
  const std::string_view r = rslt->value.IsString() ? rslt->value.GetString() : "";
  if (r == "ok") return {http::Code::Ok, result.json};
  if (r == "fail") {
    const auto error = doc.FindMember("error");
    if (error != doc.MemberEnd() && error->value.IsString() && std::string_view(error->value.GetString()) == "failUnknownAPI")
      return {http::Code::NotFound, result.json};
  }
  return {http::Code::InternalServerError, result.json};
}

bool valid_topic(std::string_view topic) {
  return !topic.empty() && topic.size() <= 64 &&
         std::all_of(topic.begin(), topic.end(), [](char c) { return name_char(c) || c == '.'; });
}

std::variant<ObgetTarget, http::Code> parse_obget_uri(std::string_view uri) {
  constexpr std::string_view kPub = "/pub/";
  constexpr std::string_view kRt = "/rtstreams/";
  if (uri.starts_with(kPub)) {
    const std::string_view topic = uri.substr(kPub.size());
    if (!valid_topic(topic)) return http::Code::BadRequest;
    return ObgetTarget{ObgetTarget::Kind::Publish, std::string(topic)};
  }
  if (uri.starts_with(kRt)) {
    const std::string_view name = uri.substr(kRt.size());
    // Not a possible [rtstreams] name: no such rtstream.
    if (name.empty() || name.size() > 64 || !std::all_of(name.begin(), name.end(), name_char))
      return http::Code::NotFound;
    return ObgetTarget{ObgetTarget::Kind::RtStream, std::string(name)};
  }
  return http::Code::NotFound;
}

std::variant<SubscriptionAsk, http::Code> parse_publish_options(std::string_view data) {
  SubscriptionAsk ask;
  if (data.empty()) return ask;
  rapidjson::Document doc;
  if (!parse_object(doc, data)) return http::Code::BadRequest;
  std::set<std::string_view> seen;
  for (const auto& m : doc.GetObject()) {
    const std::string_view key(m.name.GetString(), m.name.GetStringLength());
    if (!seen.insert(key).second) return http::Code::BadRequest;  // the same key twice: which one?
    const auto& v = m.value;
    if (key == "rateHz") {
      if (!v.IsNumber()) return http::Code::BadRequest;
      const double r = v.GetDouble();
      if (!std::isfinite(r) || r <= 0 || r > kMaxPublishRateHz) return http::Code::BadRequest;
      ask.rate_hz = r;
    } else if (key == "minMs") {
      if (!v.IsUint()) return http::Code::BadRequest;  // integers only; 4294967295 at most
      ask.min_ms = v.GetUint();
    } else if (key == "trigger") {
      // Narrower than "any string": the device gets the pubRecs JSON as a raw query value
      // (§4.9) and %-decodes it, so '&', '%' and quotes would garble the whole command.
      if (!v.IsString()) return http::Code::BadRequest;
      const std::string_view t(v.GetString(), v.GetStringLength());
      if (t.size() > 64 || !std::all_of(t.begin(), t.end(), name_char)) return http::Code::BadRequest;
      ask.trigger = std::string(t);
    } else {
      return http::Code::BadRequest;
    }
  }
  return ask;
}

}  // namespace edgelink::devices
