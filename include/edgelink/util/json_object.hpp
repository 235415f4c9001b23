#pragma once
// Member-by-member building of a RapidJSON object, for the status document. Keys and
// strings are copied into the document's allocator (the sources are temporaries).
// Nested objects are built in a local value and moved in when complete, so no
// reference into a parent's member array is ever held across another AddMember (which
// may reallocate it).

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include <rapidjson/document.h>

namespace edgelink {

class JsonObject {
 public:
  using Allocator = rapidjson::Document::AllocatorType;

  // Turns `target` into an (empty) object unless it already is one.
  JsonObject(rapidjson::Value& target, Allocator& a) : v_(&target), a_(&a) {
    if (!v_->IsObject()) v_->SetObject();
  }

  JsonObject& u64(std::string_view key, uint64_t n) { return add(key, rapidjson::Value(n)); }
  JsonObject& num(std::string_view key, double d) { return add(key, rapidjson::Value(d)); }
  JsonObject& boolean(std::string_view key, bool b) { return add(key, rapidjson::Value(b)); }
  JsonObject& str(std::string_view key, std::string_view s) {
    return add(key, rapidjson::Value(s.data(), static_cast<rapidjson::SizeType>(s.size()), *a_));
  }
  JsonObject& null(std::string_view key) { return add(key, rapidjson::Value()); }
  // Unix milliseconds, or null for "never".
  JsonObject& ms(std::string_view key, std::optional<uint64_t> unix_ms) {
    return unix_ms ? u64(key, *unix_ms) : null(key);
  }
  JsonObject& add(std::string_view key, rapidjson::Value&& value) {
    v_->AddMember(rapidjson::Value(key.data(), static_cast<rapidjson::SizeType>(key.size()), *a_), value, *a_);
    return *this;
  }
  // A nested object: `fill(JsonObject&)` writes its members, then it is added.
  template <class Fill>
  JsonObject& object(std::string_view key, Fill&& fill) {
    rapidjson::Value child(rapidjson::kObjectType);
    JsonObject builder(child, *a_);
    std::forward<Fill>(fill)(builder);
    return add(key, std::move(child));
  }

  Allocator& allocator() const { return *a_; }
  rapidjson::Value& value() const { return *v_; }

 private:
  rapidjson::Value* v_;
  Allocator* a_;
};

}  // namespace edgelink
