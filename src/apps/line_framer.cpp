#include "edgelink/apps/line_framer.hpp"

#include <cstring>

namespace edgelink {

LineFramer::LineFramer(size_t max_line_bytes) : max_line_bytes_(max_line_bytes) {}

void LineFramer::reset() {
  partial_.clear();
  line_.clear();
  discarding_ = false;
  lines_ = 0;
}

namespace {

const char* find_newline(std::string_view s) {
  return s.empty() ? nullptr : static_cast<const char*>(std::memchr(s.data(), '\n', s.size()));
}

}  // namespace

LineFramer::Result LineFramer::finish() {
  discarding_ = false;  // an overlong last line was reported when it passed the limit
  if (partial_.empty()) return {Status::NeedMore, {}, 0, lines_};
  ++lines_;
  if (partial_.back() == '\r') partial_.pop_back();
  if (partial_.size() > max_line_bytes_) {
    partial_.clear();
    return {Status::TooLong, {}, 0, lines_};
  }
  line_.swap(partial_);
  partial_.clear();
  return {Status::Line, line_, 0, lines_};
}

LineFramer::Result LineFramer::next(std::string_view input) {
  size_t off = 0;
  if (discarding_) {
    const char* nl = find_newline(input);
    if (nl == nullptr) return {Status::NeedMore, {}, input.size(), lines_};
    discarding_ = false;
    off = static_cast<size_t>(nl - input.data()) + 1;
  }

  const std::string_view rest = input.substr(off);
  const char* nl = find_newline(rest);

  if (nl != nullptr) {
    const size_t pos = static_cast<size_t>(nl - rest.data());
    const size_t consumed = off + pos + 1;
    ++lines_;
    if (partial_.empty()) {
      // Fast path: the whole line lies in the input; no copy.
      std::string_view line = rest.substr(0, pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() > max_line_bytes_) return {Status::TooLong, {}, consumed, lines_};
      return {Status::Line, line, consumed, lines_};
    }
    const bool cr = pos > 0 ? rest[pos - 1] == '\r' : partial_.back() == '\r';
    const size_t length = partial_.size() + pos - (cr ? 1 : 0);
    if (length > max_line_bytes_) {
      partial_.clear();
      return {Status::TooLong, {}, consumed, lines_};
    }
    partial_.append(rest.data(), pos);
    if (cr) partial_.pop_back();
    // Swap rather than copy: both buffers keep their capacity, so a steady stream of
    // split lines stops allocating after the first few.
    line_.swap(partial_);
    partial_.clear();
    return {Status::Line, line_, consumed, lines_};
  }

  // No '\n' yet. Up to max_line_bytes + 1 bytes may still become a valid line (the
  // last one could be a '\r' that gets stripped); anything beyond is already too long,
  // so it is reported now and never buffered.
  const size_t total = partial_.size() + rest.size();
  const bool ends_cr = !rest.empty() ? rest.back() == '\r' : (!partial_.empty() && partial_.back() == '\r');
  if (total - (ends_cr ? 1 : 0) > max_line_bytes_) {
    partial_.clear();
    discarding_ = true;
    ++lines_;
    return {Status::TooLong, {}, input.size(), lines_};
  }
  partial_.append(rest.data(), rest.size());
  return {Status::NeedMore, {}, input.size(), lines_};
}

}  // namespace edgelink
