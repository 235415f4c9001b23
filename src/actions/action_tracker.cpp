#include "edgelink/actions/action_tracker.hpp"

namespace edgelink {

bool ActionTracker::add(TrackedAction action) {
  if (active_.count(action.id)) return false;
  // A finished id may legitimately come back (the cloud retries after a timeout).
  if (finished_.erase(action.id)) {
    for (auto it = finished_order_.begin(); it != finished_order_.end(); ++it)
      if (*it == action.id) {
        finished_order_.erase(it);
        break;
      }
  }
  deadlines_.emplace(action.deadline, action.id);
  std::string id = action.id;
  active_.emplace(std::move(id), std::move(action));
  return true;
}

void ActionTracker::finish(const std::string& id) {
  if (finished_.insert(id).second) {
    finished_order_.push_back(id);
    if (finished_order_.size() > finished_cap_) {
      finished_.erase(finished_order_.front());
      finished_order_.pop_front();
    }
  }
}

ActionTracker::Verdict ActionTracker::on_status(const std::string& id, bool terminal) {
  auto it = active_.find(id);
  if (it == active_.end()) return finished_.count(id) ? Verdict::Late : Verdict::Forward;
  if (terminal) {
    deadlines_.erase({it->second.deadline, id});
    active_.erase(it);
    finish(id);
  }
  return Verdict::Forward;
}

std::vector<TrackedAction> ActionTracker::expire(TimePoint now) {
  std::vector<TrackedAction> out;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    std::string id = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    auto it = active_.find(id);
    out.push_back(std::move(it->second));
    active_.erase(it);
    finish(id);
  }
  return out;
}

const TrackedAction* ActionTracker::find(const std::string& id) const {
  auto it = active_.find(id);
  return it == active_.end() ? nullptr : &it->second;
}

std::vector<TrackedAction> ActionTracker::take_cancellations(const std::string& target) {
  std::vector<TrackedAction> out;
  if (target.empty()) return out;  // "" is what every other action has in `cancels`
  for (auto it = active_.begin(); it != active_.end();) {
    if (it->second.cancels != target) {
      ++it;
      continue;
    }
    deadlines_.erase({it->second.deadline, it->first});
    finish(it->first);
    out.push_back(std::move(it->second));
    it = active_.erase(it);
  }
  return out;
}

std::vector<TrackedAction> ActionTracker::active() const {
  std::vector<TrackedAction> out;
  out.reserve(active_.size());
  for (const auto& [deadline, id] : deadlines_) out.push_back(active_.at(id));
  return out;
}

std::optional<ActionTracker::TimePoint> ActionTracker::next_deadline() const {
  if (deadlines_.empty()) return std::nullopt;
  return deadlines_.begin()->first;
}

}  // namespace edgelink
