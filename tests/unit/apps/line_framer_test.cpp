#include "edgelink/apps/line_framer.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

using edgelink::LineFramer;

namespace {

// "L:<text>#n" for a line, "T#n" for a too-long line: easy to compare and to read.
using Events = std::vector<std::string>;

std::string event(const LineFramer::Result& r) {
  if (r.status == LineFramer::Status::Line) return "L:" + std::string(r.line) + "#" + std::to_string(r.line_number);
  return "T#" + std::to_string(r.line_number);
}

// Feeds every chunk the way a session would, checking the framer's contract as it goes.
Events feed(LineFramer& framer, const std::vector<std::string>& chunks, size_t max) {
  Events out;
  for (const auto& chunk : chunks) {
    std::string_view input = chunk;
    for (;;) {
      const auto r = framer.next(input);
      REQUIRE(r.consumed <= input.size());
      REQUIRE(framer.buffered() <= max + 1);
      if (r.status == LineFramer::Status::NeedMore) {
        REQUIRE(r.consumed == input.size());
        break;
      }
      REQUIRE(r.consumed > 0);
      if (r.status == LineFramer::Status::Line) REQUIRE(r.line.size() <= max);
      if (r.consumed == input.size()) REQUIRE(framer.buffered() == 0);  // a line ended here
      out.push_back(event(r));
      input.remove_prefix(r.consumed);
    }
  }
  return out;
}

// The obvious, non-incremental definition the framer must agree with.
Events reference(const std::string& data, size_t max) {
  Events out;
  uint64_t n = 0;
  size_t start = 0;
  for (size_t nl = data.find('\n'); nl != std::string::npos; nl = data.find('\n', start)) {
    std::string line = data.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    ++n;
    out.push_back(line.size() > max ? "T#" + std::to_string(n) : "L:" + line + "#" + std::to_string(n));
    start = nl + 1;
  }
  return out;
}

std::vector<std::string> bytewise(const std::string& data) {
  std::vector<std::string> v;
  for (char c : data) v.emplace_back(1, c);
  return v;
}

std::vector<std::string> random_chunks(const std::string& data, std::mt19937& rng, size_t max_chunk) {
  std::vector<std::string> v;
  std::uniform_int_distribution<size_t> len(0, max_chunk);  // empty chunks too
  for (size_t i = 0; i < data.size();) {
    const size_t n = std::min(len(rng), data.size() - i);
    v.push_back(data.substr(i, n));
    i += n;
  }
  return v;
}

std::string random_stream(std::mt19937& rng, size_t max) {
  std::string data;
  std::uniform_int_distribution<int> kind(0, 9);
  std::uniform_int_distribution<size_t> len(0, max + 3);
  const std::string alphabet = "ab{}\":,x\r";
  for (int i = 0; i < 200; ++i) {
    const int k = kind(rng);
    size_t n = k < 2 ? 0 : k < 4 ? max + (k - 2) : k == 4 ? 3 * max : len(rng);
    std::string line;
    for (size_t j = 0; j < n; ++j) line.push_back(alphabet[rng() % alphabet.size()]);
    if (k == 5) line += "\r";
    data += line + "\n";
  }
  return data;
}

}  // namespace

TEST_CASE("LineFramer returns whole lines in place, without copying") {
  LineFramer framer(100);
  const std::string input = "{\"a\":1}\n{\"b\":2}\npart";
  std::string_view rest = input;

  auto r = framer.next(rest);
  REQUIRE(r.status == LineFramer::Status::Line);
  CHECK(r.line == "{\"a\":1}");
  CHECK(r.line.data() == input.data());
  CHECK(r.consumed == 8);
  CHECK(r.line_number == 1);
  rest.remove_prefix(r.consumed);

  r = framer.next(rest);
  REQUIRE(r.status == LineFramer::Status::Line);
  CHECK(r.line == "{\"b\":2}");
  CHECK(r.line.data() == input.data() + 8);
  CHECK(r.line_number == 2);
  rest.remove_prefix(r.consumed);

  r = framer.next(rest);
  CHECK(r.status == LineFramer::Status::NeedMore);
  CHECK(r.consumed == 4);
  CHECK(framer.buffered() == 4);

  r = framer.next("line\n");
  REQUIRE(r.status == LineFramer::Status::Line);
  CHECK(r.line == "partline");
  CHECK(r.line_number == 3);
  CHECK(r.consumed == 5);
  // Nothing incomplete is held once the split line is out (the session warns on close
  // about buffered bytes).
  CHECK(framer.buffered() == 0);
}

TEST_CASE("LineFramer strips exactly one trailing CR, also when the CR ends a chunk") {
  LineFramer framer(100);
  CHECK(feed(framer, {"a\r\nb\r\r\nc\rd\n"}, 100) == Events{"L:a#1", "L:b\r#2", "L:c\rd#3"});
  CHECK(feed(framer, {"x\r", "\n", "\r", "\n"}, 100) == Events{"L:x#4", "L:#5"});
}

TEST_CASE("LineFramer reports empty lines and counts them") {
  LineFramer framer(10);
  CHECK(feed(framer, {"\n\r\n\nz\n"}, 10) == Events{"L:#1", "L:#2", "L:#3", "L:z#4"});
}

TEST_CASE("LineFramer: empty input needs more and consumes nothing") {
  LineFramer framer(10);
  const auto r = framer.next("");
  CHECK(r.status == LineFramer::Status::NeedMore);
  CHECK(r.consumed == 0);
}

TEST_CASE("LineFramer accepts exactly max bytes and rejects max+1") {
  const size_t max = 8;
  const std::string exact(max, 'a');
  const std::string over(max + 1, 'b');
  SECTION("whole in one input") {
    LineFramer framer(max);
    CHECK(feed(framer, {exact + "\n" + over + "\n" + exact + "\r\n" + over + "\r\nok\n"}, max) ==
          Events{"L:" + exact + "#1", "T#2", "L:" + exact + "#3", "T#4", "L:ok#5"});
  }
  SECTION("split, so the framer buffers") {
    LineFramer framer(max);
    CHECK(feed(framer, {exact, "\n", exact + "\r", "\n", over, "\n", "ok\n"}, max) ==
          Events{"L:" + exact + "#1", "L:" + exact + "#2", "T#3", "L:ok#4"});
  }
  SECTION("a CR after max bytes is held until we know whether '\\n' follows") {
    LineFramer framer(max);
    auto r = framer.next(exact + "\r");
    CHECK(r.status == LineFramer::Status::NeedMore);
    CHECK(framer.buffered() == max + 1);
    r = framer.next("x");  // not a line ending after all: max+2 bytes
    CHECK(r.status == LineFramer::Status::TooLong);
    CHECK(r.line_number == 1);
    CHECK(framer.buffered() == 0);
  }
}

TEST_CASE("LineFramer reports a too-long line once, discards it across calls and resumes") {
  const size_t max = 16;
  LineFramer framer(max);
  std::vector<std::string> chunks{"first\n", "0123456789"};
  for (int i = 0; i < 50; ++i) chunks.push_back("0123456789");  // 510 bytes without '\n'
  chunks.push_back("tail of the long line\nsecond\n");

  Events events;
  size_t too_long_reports = 0;
  for (const auto& chunk : chunks) {
    std::string_view input = chunk;
    for (;;) {
      const auto r = framer.next(input);
      CHECK(framer.buffered() <= max + 1);  // never buffers the long line
      if (r.status == LineFramer::Status::NeedMore) break;
      if (r.status == LineFramer::Status::TooLong) ++too_long_reports;
      events.push_back(event(r));
      input.remove_prefix(r.consumed);
    }
  }
  CHECK(too_long_reports == 1);
  CHECK(events == Events{"L:first#1", "T#2", "L:second#3"});
}

TEST_CASE("LineFramer: a too-long line and the next lines in one input") {
  LineFramer framer(4);
  CHECK(feed(framer, {"abcdefgh\nab\n", "cdefghijk", "\nxy\n"}, 4) == Events{"T#1", "L:ab#2", "T#3", "L:xy#4"});
}

TEST_CASE("LineFramer with max 0 accepts only empty lines") {
  LineFramer framer(0);
  CHECK(feed(framer, {"\n", "\r\n", "a\n", "\r", "\n", "\r\r\n"}, 0) == Events{"L:#1", "L:#2", "T#3", "L:#4", "T#5"});
}

TEST_CASE("LineFramer: bytes after the last newline stay buffered, never reported") {
  LineFramer framer(100);
  CHECK(feed(framer, {"a\nunfinished"}, 100) == Events{"L:a#1"});
  CHECK(framer.buffered() == 10);
  framer.reset();
  CHECK(framer.buffered() == 0);
  CHECK(feed(framer, {"b\n"}, 100) == Events{"L:b#1"});
}

TEST_CASE("LineFramer: finish hands over an unterminated last line once") {
  LineFramer framer(10);
  CHECK(feed(framer, {"a\n{\"b\":", "1}"}, 10) == Events{"L:a#1"});
  auto r = framer.finish();
  REQUIRE(r.status == LineFramer::Status::Line);
  CHECK(event(r) == "L:{\"b\":1}#2");
  CHECK(r.consumed == 0);
  CHECK(framer.buffered() == 0);
  CHECK(framer.finish().status == LineFramer::Status::NeedMore);  // nothing left

  LineFramer cr(3);
  CHECK(feed(cr, {"abc\r"}, 3).empty());  // max + 1 bytes: the CR is not part of the line
  CHECK(event(cr.finish()) == "L:abc#1");

  LineFramer none(10);
  CHECK(feed(none, {"done\n"}, 10) == Events{"L:done#1"});
  CHECK(none.finish().status == LineFramer::Status::NeedMore);
}

TEST_CASE("LineFramer: finish after an overlong last line reports nothing more") {
  LineFramer framer(4);
  CHECK(feed(framer, {"toolong"}, 4) == Events{"T#1"});
  CHECK(framer.finish().status == LineFramer::Status::NeedMore);

  LineFramer lowered(100);
  CHECK(feed(lowered, {"0123456789"}, 100).empty());
  lowered.set_max_line_bytes(5);
  CHECK(event(lowered.finish()) == "T#1");
  CHECK(lowered.buffered() == 0);
}

TEST_CASE("LineFramer: reset ends discarding and restarts line numbers") {
  LineFramer framer(4);
  CHECK(feed(framer, {"toolongline"}, 4) == Events{"T#1"});
  framer.reset();
  CHECK(feed(framer, {"ok\n"}, 4) == Events{"L:ok#1"});
}

TEST_CASE("LineFramer: lowering max_line_bytes applies to a line already buffered") {
  LineFramer framer(100);
  CHECK(feed(framer, {"0123456789"}, 100).empty());
  framer.set_max_line_bytes(5);
  CHECK(feed(framer, {"abc\nok\n"}, 100) == Events{"T#1", "L:ok#2"});
}

TEST_CASE("LineFramer gives the same lines for every split of the input") {
  const size_t max = 12;
  std::mt19937 rng(12345);
  for (int round = 0; round < 20; ++round) {
    const std::string data = random_stream(rng, max);
    const Events expected = reference(data, max);
    REQUIRE(expected.size() == 200);

    LineFramer whole(max);
    CHECK(feed(whole, {data}, max) == expected);

    LineFramer bytes(max);
    CHECK(feed(bytes, bytewise(data), max) == expected);

    LineFramer chunked(max);
    CHECK(feed(chunked, random_chunks(data, rng, 2 * max), max) == expected);
  }
}

TEST_CASE("LineFramer: every single split point of a small input gives the same lines") {
  const std::string data = "{\"a\":1}\r\n\nlonger than ten\r\nten bytes!\r\n0123456789\r\r\n\r\nend\n";
  const size_t max = 10;
  const Events expected = reference(data, max);
  for (size_t i = 0; i <= data.size(); ++i) {
    for (size_t j = i; j <= data.size(); ++j) {
      LineFramer framer(max);
      CHECK(feed(framer, {data.substr(0, i), data.substr(i, j - i), data.substr(j)}, max) == expected);
    }
  }
}
