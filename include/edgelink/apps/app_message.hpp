#pragma once
// One line from a local app -> data point, action status, control line or a typed
// error (spec/app-protocol.md). Data points are the hot path (millions per second):
// they are validated by a single scan without building a DOM and without allocating;
// the result points into the line.

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace edgelink {

enum class AppErrorCode { BadJson, NotAnObject, MissingField, BadField, LineTooLong, UnknownStream, Overloaded };
const char* to_string(AppErrorCode code);

struct AppError {
  AppErrorCode code;
  std::string field;    // the offending key, empty when none
  std::string message;  // for people: what is wrong and what is expected
};

struct DataPoint {
  std::string_view stream;
  uint32_t sequence = 0;
  uint64_t timestamp = 0;
  // The point as it goes into a batch: the line's object with the "stream" member
  // (and one adjacent comma) cut out, as two slices of the line: head + tail.
  std::string_view head;
  std::string_view tail;
};

struct ActionStatus {
  std::string action_id;  // from "action_id" or its alias "id"
  std::string state;
  int progress = 0;       // 0..100
  bool has_progress = false;  // the line had a "progress"
  std::vector<std::string> errors;
  uint32_t sequence = 0;
  uint64_t timestamp = 0;
  // uplink's rootfs updater reports "Completed" at 20, 40, 50, 75 and 90 before its final
  // 100: a Completed with a lower progress is progress, not the end of the action.
  bool terminal() const { return state == "Failed" || (state == "Completed" && (!has_progress || progress == 100)); }
};

// {"edgelink": {...}}: never reaches the broker.
struct ControlLine {
  bool hello = false;         // {"edgelink": {"hello": {...}}}
  bool hello_errors = false;  // hello.errors == true
};

using AppMessage = std::variant<DataPoint, ActionStatus, ControlLine, AppError>;

// Parse one line (no '\n'). Valid JSON in, valid JSON out: a DataPoint's head+tail is
// always a valid JSON object. Invalid UTF-8 is BadJson.
AppMessage parse_app_line(std::string_view line);

// Validates that `text` is exactly one JSON value (RFC 8259, UTF-8), surrounding
// whitespace allowed. Shared by the scanner above and by tests.
bool is_valid_json(std::string_view text);

}  // namespace edgelink
