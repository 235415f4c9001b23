#include "edgelink/apps/app_message.hpp"

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <random>
#include <string>
#include <vector>

using namespace edgelink;

namespace {

AppError as_error(const AppMessage& m) {
  REQUIRE(std::holds_alternative<AppError>(m));
  return std::get<AppError>(m);
}

DataPoint as_point(const AppMessage& m) {
  if (const auto* e = std::get_if<AppError>(&m)) FAIL("unexpected error " << to_string(e->code) << ": " << e->message);
  REQUIRE(std::holds_alternative<DataPoint>(m));
  return std::get<DataPoint>(m);
}

ActionStatus as_status(const AppMessage& m) {
  if (const auto* e = std::get_if<AppError>(&m)) FAIL("unexpected error " << to_string(e->code) << ": " << e->message);
  REQUIRE(std::holds_alternative<ActionStatus>(m));
  return std::get<ActionStatus>(m);
}

void check_error(std::string_view line, AppErrorCode code, const std::string& field) {
  INFO("line: " << line);
  const AppError e = as_error(parse_app_line(line));
  CHECK(to_string(e.code) == std::string(to_string(code)));
  CHECK(e.field == field);
  CHECK_FALSE(e.message.empty());
}

std::string head_tail(const DataPoint& p) { return std::string(p.head) + std::string(p.tail); }

}  // namespace

TEST_CASE("to_string gives the spec's error code names") {
  CHECK(std::string(to_string(AppErrorCode::BadJson)) == "BadJson");
  CHECK(std::string(to_string(AppErrorCode::NotAnObject)) == "NotAnObject");
  CHECK(std::string(to_string(AppErrorCode::MissingField)) == "MissingField");
  CHECK(std::string(to_string(AppErrorCode::BadField)) == "BadField");
  CHECK(std::string(to_string(AppErrorCode::LineTooLong)) == "LineTooLong");
  CHECK(std::string(to_string(AppErrorCode::UnknownStream)) == "UnknownStream");
  CHECK(std::string(to_string(AppErrorCode::Overloaded)) == "Overloaded");
}

TEST_CASE("a data point is parsed in place and loses its stream member") {
  const std::string line =
      R"({"stream": "imu", "sequence": 17, "timestamp": 1732180000123, "ax": 0.12, "ay": -0.3, "label": "ok"})";
  const DataPoint p = as_point(parse_app_line(line));
  CHECK(p.stream == "imu");
  CHECK(p.stream.data() == line.data() + 12);  // points into the line
  CHECK(p.sequence == 17);
  CHECK(p.timestamp == 1732180000123ULL);
  CHECK(head_tail(p) == R"({"sequence": 17, "timestamp": 1732180000123, "ax": 0.12, "ay": -0.3, "label": "ok"})");
}

TEST_CASE("head+tail cuts stream with exactly one comma wherever it stands") {
  struct Case {
    const char* line;
    const char* expected;
  };
  const Case cases[] = {
      {R"({"stream":"s","sequence":1,"timestamp":2})", R"({"sequence":1,"timestamp":2})"},
      {R"({"sequence":1,"stream":"s","timestamp":2})", R"({"sequence":1,"timestamp":2})"},
      {R"({"sequence":1,"timestamp":2,"stream":"s"})", R"({"sequence":1,"timestamp":2})"},
      {R"(  { "stream" : "s" , "sequence" : 1 , "timestamp" : 2 }  )", R"({ "sequence" : 1 , "timestamp" : 2 })"},
      {R"({ "sequence" : 1 ,"stream" : "s" , "timestamp" : 2 })", R"({ "sequence" : 1  , "timestamp" : 2 })"},
      {"{\t\"sequence\":1,\r\n\"timestamp\":2\n,\n\"stream\":\"s\"\t}", "{\t\"sequence\":1,\r\n\"timestamp\":2\n\t}"},
  };
  for (const auto& c : cases) {
    INFO(c.line);
    const DataPoint p = as_point(parse_app_line(c.line));
    CHECK(head_tail(p) == c.expected);
    CHECK(is_valid_json(head_tail(p)));
    CHECK(p.head.front() == '{');
    CHECK(p.tail.back() == '}');
  }
}

TEST_CASE("head+tail is the same object minus stream for many generated shapes") {
  std::mt19937 rng(7);
  const std::vector<std::string> spaces{"", " ", "  ", "\t", "\r\n", " \n "};
  auto ws = [&] { return spaces[rng() % spaces.size()]; };
  const std::vector<std::string> values{"1", "-2.5e3", "\"x,}\"", "[1,{\"a\":[]}]", "{}", "null", "true",
                                        "\"\\\"\\u00e9\"", "{\"stream\":1}"};
  for (int round = 0; round < 2000; ++round) {
    std::vector<std::pair<std::string, std::string>> members{
        {"stream", "\"imu-2_x\""}, {"sequence", "42"}, {"timestamp", "1000"}};
    const int extra = static_cast<int>(rng() % 4);
    for (int i = 0; i < extra; ++i) members.push_back({"c" + std::to_string(i), values[rng() % values.size()]});
    std::shuffle(members.begin(), members.end(), rng);

    std::string line = ws() + "{" + ws();
    for (size_t i = 0; i < members.size(); ++i) {
      if (i > 0) line += ws() + "," + ws();
      line += "\"" + members[i].first + "\"" + ws() + ":" + ws() + members[i].second;
    }
    line += ws() + "}" + ws();
    INFO(line);

    const DataPoint p = as_point(parse_app_line(line));
    CHECK(p.stream == "imu-2_x");
    CHECK(p.sequence == 42);
    CHECK(p.timestamp == 1000);
    const std::string out = head_tail(p);
    REQUIRE(is_valid_json(out));

    rapidjson::Document expected;
    expected.Parse(line.data(), line.size());
    REQUIRE_FALSE(expected.HasParseError());
    expected.RemoveMember("stream");
    rapidjson::Document actual;
    actual.Parse(out.data(), out.size());
    REQUIRE_FALSE(actual.HasParseError());
    CHECK(actual == expected);
  }
}

TEST_CASE("is_valid_json accepts RFC 8259 JSON") {
  const char* valid[] = {
      "0", "-0", "1.5", "-1.25e+10", "1E-2", "0e0", "123456789012345678901234567890", "1e400",
      "true", "false", "null", "\"\"", "\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\\u00e9\\uFFFF\"",
      "\"\\uD83D\\uDE00\"", "\"\\udbff\\udfff\"", "[]", "{}", " [ 1 , [ ] , { } ] ", "{\"a\":{\"b\":[null]}}",
      "\t\r\n {\"\":0} \n", "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\xEF\xBF\xBF\"",
      "\"\x7F\"",
  };
  for (const char* text : valid) {
    INFO(text);
    CHECK(is_valid_json(text));
  }
}

TEST_CASE("is_valid_json rejects what RFC 8259 or UTF-8 forbid") {
  const std::string invalid[] = {
      "", " ", "01", "-", "+1", "1.", ".5", "1e", "1e+", "0x1", "-01", "1.e3", "NaN", "Infinity",
      "tru", "nul", "True", "[1,]", "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "{a:1}", "{\"a\":}", "{'a':1}",
      "[", "]", "{", "{\"a\":1", "\"abc", "1 2", "{} {}", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"",
      "\"\\uD83D\"",         // lone high surrogate
      "\"\\uDE00\"",         // lone low surrogate
      "\"\\uD83D\\u0041\"",  // high surrogate + non-low
      "\"\\uD83Dx\"", "\"\t\"", "\"\n\"", std::string("\"\0\"", 3), std::string("1\0", 2), "\f1",
      "\"\x80\"",              // stray continuation byte
      "\"\xC0\x80\"",          // overlong NUL
      "\"\xC1\xBF\"",          // overlong
      "\"\xE0\x80\xAF\"",      // overlong 3-byte
      "\"\xF0\x80\x80\xAF\"",  // overlong 4-byte
      "\"\xED\xA0\x80\"",      // UTF-8 encoded surrogate U+D800
      "\"\xF4\x90\x80\x80\"",  // U+110000
      "\"\xF5\x80\x80\x80\"", "\"\xFF\"", "\"\xC3\"", "\"\xE2\x82\"", "\"\xE2\x82x\"", "\xC3\xA9",
      "\xEF\xBB\xBF{}",  // a byte-order mark is not JSON text; a line protocol has no use for it
  };
  for (const auto& text : invalid) {
    INFO(text);
    CHECK_FALSE(is_valid_json(text));
  }
}

TEST_CASE("is_valid_json limits nesting to 64 levels") {
  CHECK(is_valid_json(std::string(64, '[') + std::string(64, ']')));
  CHECK_FALSE(is_valid_json(std::string(65, '[') + std::string(65, ']')));
  std::string objects;
  for (int i = 0; i < 64; ++i) objects += "{\"a\":";
  CHECK(is_valid_json(objects + "1" + std::string(64, '}')));
  CHECK_FALSE(is_valid_json("{\"a\":" + objects + "1" + std::string(65, '}')));
  // Deep garbage must fail cleanly, not overflow the stack.
  CHECK_FALSE(is_valid_json(std::string(100000, '[')));
  // A data point counts its own object as level 1.
  const std::string deep63 = std::string(63, '[') + std::string(63, ']');
  CHECK_NOTHROW(as_point(parse_app_line("{\"stream\":\"s\",\"sequence\":1,\"timestamp\":1,\"d\":" + deep63 + "}")));
  check_error("{\"stream\":\"s\",\"sequence\":1,\"timestamp\":1,\"d\":[" + deep63 + "]}", AppErrorCode::BadJson, "");
}

TEST_CASE("lines that are not one JSON object") {
  check_error("", AppErrorCode::BadJson, "");
  check_error("   \t ", AppErrorCode::BadJson, "");
  check_error("[1,2]", AppErrorCode::NotAnObject, "");
  check_error(" 42 ", AppErrorCode::NotAnObject, "");
  check_error("\"stream\"", AppErrorCode::NotAnObject, "");
  check_error("[1,2", AppErrorCode::BadJson, "");
  check_error("{", AppErrorCode::BadJson, "");
  check_error("{}{}", AppErrorCode::BadJson, "");
  check_error("{} x", AppErrorCode::BadJson, "");
  check_error("{\"stream\":\"a\",\"sequence\":1,\"timestamp\":1,}", AppErrorCode::BadJson, "");
  check_error("{\"stream\":\"a\",\"sequence\":1,\"timestamp\":1,\"x\":\"\xC0\xAF\"}", AppErrorCode::BadJson, "");
  check_error("{\"stream\":\"a\",\"sequence\":1,\"timestamp\":1,\"\xFF\":0}", AppErrorCode::BadJson, "");
  // A field error does not hide broken JSON later in the line.
  check_error("{\"stream\":\"bad name\",\"sequence\":-1,\"timestamp\":1,\"x\":tru}", AppErrorCode::BadJson, "");
  check_error("{\"stream\":\"a\",\"stream\":\"b\",\"sequence\":1,\"timestamp\":1", AppErrorCode::BadJson, "");
}

TEST_CASE("BadJson messages say where the line broke") {
  const AppError e = as_error(parse_app_line("{\"stream\":\"a\",\"x\":01}"));
  CHECK(e.message.find("byte offset 19") != std::string::npos);
}

TEST_CASE("stream must be 1..64 raw letters, digits, '_' or '-'") {
  const std::string tail = ",\"sequence\":1,\"timestamp\":1}";
  CHECK(as_point(parse_app_line("{\"stream\":\"" + std::string(64, 'a') + "\"" + tail)).stream.size() == 64);
  CHECK(as_point(parse_app_line("{\"stream\":\"Az09_-\"" + tail)).stream == "Az09_-");
  check_error("{\"stream\":\"" + std::string(65, 'a') + "\"" + tail, AppErrorCode::BadField, "stream");
  check_error("{\"stream\":\"\"" + tail, AppErrorCode::BadField, "stream");
  check_error("{\"stream\":\"a b\"" + tail, AppErrorCode::BadField, "stream");
  check_error("{\"stream\":\"a.b\"" + tail, AppErrorCode::BadField, "stream");
  check_error("{\"stream\":\"a/b\"" + tail, AppErrorCode::BadField, "stream");
  check_error("{\"stream\":\"\xC3\xA9\"" + tail, AppErrorCode::BadField, "stream");
  check_error("{\"stream\":\"im\\u0075\"" + tail, AppErrorCode::BadField, "stream");  // escapes: not raw bytes
  check_error("{\"stream\":1" + tail, AppErrorCode::BadField, "stream");
  check_error("{\"stream\":null" + tail, AppErrorCode::BadField, "stream");
  check_error("{\"stream\":[\"imu\"]" + tail, AppErrorCode::BadField, "stream");
  check_error("{\"sequence\":1,\"timestamp\":1}", AppErrorCode::MissingField, "stream");
  check_error("{}", AppErrorCode::MissingField, "stream");
  check_error("{\"Stream\":\"imu\",\"sequence\":1,\"timestamp\":1}", AppErrorCode::MissingField, "stream");
}

TEST_CASE("sequence is an unsigned 32-bit integer") {
  auto line = [](const std::string& seq) { return "{\"stream\":\"s\",\"sequence\":" + seq + ",\"timestamp\":5}"; };
  CHECK(as_point(parse_app_line(line("0"))).sequence == 0);
  CHECK(as_point(parse_app_line(line("4294967295"))).sequence == 4294967295U);
  for (const char* bad : {"4294967296", "99999999999999999999999", "-1", "-0", "1.0", "1e2", "\"1\"", "null", "true",
                          "[1]", "{}"}) {
    check_error(line(bad), AppErrorCode::BadField, "sequence");
  }
  const AppError e = as_error(parse_app_line("{\"stream\":\"s\",\"timestamp\":5}"));
  CHECK(e.code == AppErrorCode::MissingField);
  CHECK(e.field == "sequence");
  CHECK(e.message == "data point needs an unsigned 32-bit 'sequence'");
}

TEST_CASE("timestamp is an unsigned 64-bit integer") {
  auto line = [](const std::string& ts) { return "{\"stream\":\"s\",\"sequence\":1,\"timestamp\":" + ts + "}"; };
  CHECK(as_point(parse_app_line(line("0"))).timestamp == 0);
  CHECK(as_point(parse_app_line(line("18446744073709551615"))).timestamp == 18446744073709551615ULL);
  for (const char* bad : {"18446744073709551616", "100000000000000000000", "-5", "1732180000123.0", "1.7e12",
                          "\"1732180000123\"", "false"}) {
    check_error(line(bad), AppErrorCode::BadField, "timestamp");
  }
  check_error("{\"stream\":\"s\",\"sequence\":1}", AppErrorCode::MissingField, "timestamp");
}

TEST_CASE("duplicate stream, sequence or timestamp is a BadField") {
  for (const char* field : {"stream", "sequence", "timestamp"}) {
    const std::string dup = std::string(",\"") + field + "\":" + (field == std::string("stream") ? "\"s\"" : "1");
    const AppError e = as_error(parse_app_line("{\"stream\":\"s\",\"sequence\":1,\"timestamp\":1" + dup + "}"));
    CHECK(e.code == AppErrorCode::BadField);
    CHECK(e.field == field);
    CHECK(e.message == "duplicate key");
  }
  // An escaped key names the same member.
  check_error("{\"stream\":\"s\",\"sequence\":1,\"timestamp\":1,\"str\\u0065am\":\"t\"}", AppErrorCode::BadField,
              "stream");
  // Other keys may repeat: they are columns, passed through.
  CHECK_NOTHROW(as_point(parse_app_line("{\"stream\":\"s\",\"sequence\":1,\"timestamp\":1,\"a\":1,\"a\":2}")));
}

TEST_CASE("escaped keys are recognised by their decoded name") {
  const DataPoint p = as_point(parse_app_line("{\"\\u0073tream\":\"s\",\"seq\\u0075ence\":3,\"timestamp\":1,\"x\":1}"));
  CHECK(p.stream == "s");
  CHECK(p.sequence == 3);
  CHECK(head_tail(p) == "{\"seq\\u0075ence\":3,\"timestamp\":1,\"x\":1}");
  // Decodes to something else: an ordinary column.
  check_error("{\"stream\\n\":\"s\",\"sequence\":1,\"timestamp\":1}", AppErrorCode::MissingField, "stream");
  check_error("{\"\\u00e9\":\"s\",\"sequence\":1,\"timestamp\":1}", AppErrorCode::MissingField, "stream");
}

TEST_CASE("action status lines become ActionStatus") {
  const ActionStatus s = as_status(parse_app_line(
      R"({"stream": "action_status", "sequence": 3, "timestamp": 1732180000456, "action_id": "842", "state": "Progress", "progress": 40, "errors": []})"));
  CHECK(s.action_id == "842");
  CHECK(s.state == "Progress");
  CHECK(s.progress == 40);
  CHECK(s.errors.empty());
  CHECK(s.sequence == 3);
  CHECK(s.timestamp == 1732180000456ULL);
  CHECK_FALSE(s.terminal());

  const ActionStatus f = as_status(parse_app_line(
      R"({"stream":"action_status","sequence":4,"timestamp":1,"id":"9","state":"Failed","errors":["disk full","\u00e9"]})"));
  CHECK(f.action_id == "9");
  CHECK(f.progress == 0);
  CHECK(f.errors == std::vector<std::string>{"disk full", "\xC3\xA9"});
  CHECK(f.terminal());

  CHECK(as_status(parse_app_line(R"({"stream":"action_status","sequence":4,"timestamp":1,"id":842,"state":"Completed"})"))
            .action_id == "842");
  CHECK(as_status(parse_app_line(
                      R"({"stream":"action_status","sequence":4,"timestamp":1,"id":"1","state":"Running","progress":39.6})"))
            .progress == 40);
  CHECK(as_status(parse_app_line(
                      R"({"stream":"action_status","sequence":4,"timestamp":1,"id":"1","state":"Running","progress":100.0})"))
            .progress == 100);
}

TEST_CASE("Completed ends an action only at progress 100 or without a progress") {
  // As uplink's rootfs updater script writes them.
  auto status = [](const std::string& state, const std::string& progress) {
    return as_status(parse_app_line(R"({ "stream": "action_status", "sequence": 0, "timestamp": 1732180000456, )"
                                    R"("action_id": "17", "state": ")" +
                                    state + "\"" + progress + R"(, "errors": [] })"));
  };
  for (const char* p : {"0", "20", "40", "50", "75", "90", "99"}) {
    INFO(p);
    const ActionStatus s = status("Completed", std::string(", \"progress\": ") + p);
    CHECK(s.has_progress);
    CHECK_FALSE(s.terminal());
  }
  CHECK(status("Completed", ", \"progress\": 100").terminal());
  const ActionStatus bare = status("Completed", "");
  CHECK_FALSE(bare.has_progress);
  CHECK(bare.terminal());
  CHECK(status("Failed", ", \"progress\": 20").terminal());
  CHECK(status("Failed", "").terminal());
  CHECK_FALSE(status("Progress", ", \"progress\": 100").terminal());
  CHECK_FALSE(status("Running", "").terminal());
}

TEST_CASE("bad action status lines") {
  const std::string pre = R"({"stream":"action_status","sequence":1,"timestamp":1,)";
  check_error(pre + R"("state":"Running"})", AppErrorCode::MissingField, "action_id");
  check_error(pre + R"("action_id":"1"})", AppErrorCode::MissingField, "state");
  check_error(pre + R"("action_id":"1","state":5})", AppErrorCode::BadField, "state");
  check_error(pre + R"("action_id":"","state":"Running"})", AppErrorCode::BadField, "action_id");
  check_error(pre + R"("action_id":1.5,"state":"Running"})", AppErrorCode::BadField, "action_id");
  check_error(pre + R"("id":-3,"state":"Running"})", AppErrorCode::BadField, "id");
  check_error(pre + R"("id":["1"],"state":"Running"})", AppErrorCode::BadField, "id");
  check_error(pre + R"("id":"1","state":"Running","progress":101})", AppErrorCode::BadField, "progress");
  check_error(pre + R"("id":"1","state":"Running","progress":-0.5})", AppErrorCode::BadField, "progress");
  check_error(pre + R"("id":"1","state":"Running","progress":"40"})", AppErrorCode::BadField, "progress");
  check_error(pre + R"("id":"1","state":"Running","errors":"boom"})", AppErrorCode::BadField, "errors");
  check_error(pre + R"("id":"1","state":"Running","errors":["a",1]})", AppErrorCode::BadField, "errors");
  check_error(pre + R"("id":"1","state":"Running","x":1e400})", AppErrorCode::BadJson, "");
  check_error(R"({"stream":"action_status","timestamp":1,"id":"1","state":"Running"})", AppErrorCode::MissingField,
              "sequence");
  check_error(R"({"stream":"action_status","sequence":1,"id":"1","state":"Running"})", AppErrorCode::MissingField,
              "timestamp");
}

TEST_CASE("control lines") {
  AppMessage m = parse_app_line(R"( {"edgelink" : {"hello" : {"errors" : true}}} )");
  REQUIRE(std::holds_alternative<ControlLine>(m));
  CHECK(std::get<ControlLine>(m).hello);
  CHECK(std::get<ControlLine>(m).hello_errors);

  m = parse_app_line(R"({"edgelink":{"hello":{}}})");
  REQUIRE(std::holds_alternative<ControlLine>(m));
  CHECK(std::get<ControlLine>(m).hello);
  CHECK_FALSE(std::get<ControlLine>(m).hello_errors);

  m = parse_app_line(R"({"edgelink":{"hello":{"errors":false}}})");
  REQUIRE(std::holds_alternative<ControlLine>(m));
  CHECK_FALSE(std::get<ControlLine>(m).hello_errors);

  check_error(R"({"edgelink":{"bye":{}}})", AppErrorCode::BadField, "edgelink");
  check_error(R"({"edgelink":{}})", AppErrorCode::BadField, "edgelink");
  check_error(R"({"edgelink":"hello"})", AppErrorCode::BadField, "edgelink");
  check_error(R"({"edgelink":{"hello":true}})", AppErrorCode::BadField, "edgelink");
  check_error(R"({"edgelink":{"hello":{"errors":1}}})", AppErrorCode::BadField, "edgelink");
  check_error(R"({"edgelink":{"hello":{"verbose":true}}})", AppErrorCode::BadField, "edgelink");
  check_error(R"({"edgelink":{"hello":{}})", AppErrorCode::BadJson, "");
  const AppError e = as_error(parse_app_line(R"({"edgelink":{"bye":{}}})"));
  CHECK(e.message.find("'bye'") != std::string::npos);
}

TEST_CASE("edgelink with other keys follows the data-point rules") {
  check_error(R"({"edgelink":{"hello":{}},"x":1})", AppErrorCode::MissingField, "stream");
  const DataPoint p = as_point(parse_app_line(R"({"stream":"s","sequence":1,"timestamp":2,"edgelink":{"hello":{}}})"));
  CHECK(head_tail(p) == R"({"sequence":1,"timestamp":2,"edgelink":{"hello":{}}})");
}

TEST_CASE("string scanning finds special bytes at every offset of long strings") {
  // The scanner reads strings eight bytes at a time; put each kind of byte everywhere.
  for (size_t len = 0; len < 24; ++len) {
    for (size_t i = 0; i < len; ++i) {
      std::string s(len, 'a');
      INFO("len " << len << " at " << i);
      s[i] = '\x1f';
      CHECK_FALSE(is_valid_json("\"" + s + "\""));
      s[i] = '\x7f';
      CHECK(is_valid_json("\"" + s + "\""));
      s[i] = '\x80';
      CHECK_FALSE(is_valid_json("\"" + s + "\""));
      s[i] = '"';
      CHECK_FALSE(is_valid_json("\"" + s + "\""));
      CHECK(is_valid_json("[\"" + s + "]") == (i == len - 1));  // the quote ends the string there
      s.replace(i, 1, "\\n");
      CHECK(is_valid_json("\"" + s + "\""));
      s.replace(i, 2, "\xE2\x82\xAC");
      CHECK(is_valid_json("\"" + s + "\""));
    }
  }
}

TEST_CASE("sequence and timestamp of every length, wherever the line ends") {
  // Digits are read eight at a time, and the input's last eight bytes are read specially:
  // try every digit count both mid-line and as the last token, in exactly sized buffers.
  for (size_t digits = 1; digits <= 24; ++digits) {
    for (const char first : {'1', '9'}) {
      std::string number(digits, '0');
      number[0] = first;
      for (size_t i = 1; i < digits; ++i) number[i] = static_cast<char>('0' + (i * 7 + digits) % 10);
      // What the old per-digit reader accepted: at most 20 digits and at most UINT64_MAX.
      uint64_t expected = 0;
      bool fits = digits <= 20;
      for (size_t i = 0; fits && i < digits; ++i) {
        const auto d = static_cast<uint64_t>(number[i] - '0');
        fits = expected <= (UINT64_MAX - d) / 10;
        expected = expected * 10 + d;
      }
      for (const std::string suffix : {"", ".5", "e3", " "}) {
        for (const bool last : {false, true}) {
          const std::string ts = number + suffix;
          const std::string text = last ? "{\"stream\":\"s\",\"sequence\":1,\"timestamp\":" + ts + "}"
                                        : "{\"timestamp\":" + ts + ",\"stream\":\"s\",\"sequence\":1}";
          const std::vector<char> exact(text.begin(), text.end());
          const std::string_view line(exact.data(), exact.size());
          INFO(text);
          if (fits && (suffix.empty() || suffix == " ")) {
            CHECK(as_point(parse_app_line(line)).timestamp == expected);
          } else {
            check_error(line, AppErrorCode::BadField, "timestamp");
          }
          const std::string seq_text = "{\"stream\":\"s\",\"timestamp\":1,\"sequence\":" + ts + "}";
          const std::vector<char> seq_exact(seq_text.begin(), seq_text.end());
          const std::string_view seq_line(seq_exact.data(), seq_exact.size());
          if (fits && expected <= UINT32_MAX && (suffix.empty() || suffix == " ")) {
            CHECK(as_point(parse_app_line(seq_line)).sequence == expected);
          } else {
            check_error(seq_line, AppErrorCode::BadField, "sequence");
          }
        }
      }
    }
  }
  // Broken numbers stay BadJson however long their digit run.
  for (size_t digits = 0; digits <= 17; ++digits) {
    const std::string ones(digits, '1');
    for (const std::string& bad : {"0" + ones + "1", "1" + ones + ".", "1" + ones + "e", "1" + ones + "x"}) {
      check_error("{\"stream\":\"s\",\"sequence\":1,\"timestamp\":" + bad + "}", AppErrorCode::BadJson, "");
      CHECK_FALSE(is_valid_json(bad));
    }
  }
}

TEST_CASE("short inputs and strings that end the input are scanned within bounds") {
  // Exactly sized buffers of under eight bytes take the scanner's partial-load path.
  for (const char* text : {"\"", "\"a", "\"ab\"", "\"abcdef\"", "[\"a\"]", "1", "12345", "-0.5", "{}", "{\"a\":1}"}) {
    const std::string s(text);
    const std::vector<char> exact(s.begin(), s.end());
    INFO(text);
    CHECK(is_valid_json(std::string_view(exact.data(), exact.size())) == (s != "\"" && s != "\"a"));
  }
}
