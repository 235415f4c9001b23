#pragma once
// Splits a byte stream into '\n'-terminated lines with a length limit. Pure and
// incremental: no sockets, so it is unit-tested and fuzzed (tests/fuzz/line_framer_fuzz.cpp).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace edgelink {

class LineFramer {
 public:
  enum class Status {
    Line,      // `line` holds one complete line, without '\n' and without a trailing '\r'
    NeedMore,  // everything given was consumed; no complete line yet
    TooLong,   // a line passed max_line_bytes: reported once, then skipped up to its '\n'
  };
  struct Result {
    Status status;
    std::string_view line;  // valid until the next call to next()
    size_t consumed;        // bytes of the input that this call used
    uint64_t line_number;   // 1-based number of the line reported (Line or TooLong)
  };

  explicit LineFramer(size_t max_line_bytes);

  // Call repeatedly, removing `consumed` bytes from the front of `input` each time,
  // until it returns NeedMore. A line that lies whole inside `input` is returned
  // without copying; only a line split across inputs is buffered.
  Result next(std::string_view input);

  // End of the stream: the unterminated last line, if any, as Line (TooLong if it passed
  // a lowered limit), else NeedMore. uplink's line codec hands such a line over too, so
  // `printf '{...}' | nc host port` works. `consumed` is 0; the framer is empty after.
  Result finish();

  // Bytes of an incomplete line held between calls.
  size_t buffered() const { return partial_.size(); }
  void set_max_line_bytes(size_t n) { max_line_bytes_ = n; }
  void reset();

 private:
  size_t max_line_bytes_;
  std::string partial_;
  std::string line_;  // a completed split line, handed out as a view until the next call
  bool discarding_ = false;  // inside an overlong line, waiting for its '\n'
  uint64_t lines_ = 0;
};

}  // namespace edgelink
