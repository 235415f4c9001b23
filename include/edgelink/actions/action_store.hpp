#pragma once
// In-flight actions on disk, so a restart keeps their deadlines and forwards their
// statuses (persistence_path/actions.json). Pure encode/parse here; the daemon writes
// the file through the disk worker (write to a temporary, fsync, rename) whenever the
// set of actions in flight changes, and reads it once at start.
//
//   {"version":1,"actions":[{"id":"42","name":"reboot","app":"app","deadline_ms":1700000000000}]}
//
// Deadlines are wall-clock milliseconds: the steady clock restarts with the process.
// An action whose deadline passed while edgelink was down is reported timed out at
// start. An action that was still waiting for its app is not delivered again: it may
// have been delivered just before the restart, and running it twice is worse than a
// timeout the cloud can retry.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgelink {

struct PersistedAction {
  std::string id;
  std::string name;
  std::string app;
  uint64_t deadline_ms = 0;  // wall clock, ms since the epoch
  bool operator==(const PersistedAction&) const = default;
};

std::string encode_actions(const std::vector<PersistedAction>& actions);

struct ParsedActions {
  std::vector<PersistedAction> actions;
  std::string error;  // empty when the whole file was understood
  size_t skipped = 0;  // entries without a usable id/name/app/deadline
};
// Never throws. A file that is not this format gives an error and no actions; a bad
// entry is skipped and counted, the others are kept.
ParsedActions parse_actions(std::string_view text);

}  // namespace edgelink
