// CLI only: parse the command line, load the config, build a Daemon and run it.
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string_view>
#include <rapidjson/document.h>
#include <toml++/toml.h>

#include "edgelink/config/config.hpp"
#include "edgelink/daemon/daemon.hpp"
#include "edgelink/daemon/status_server.hpp"
#include "edgelink/http/metrics_writer.hpp"
#include "edgelink/util/log.hpp"

namespace {

constexpr const char* kDefaultConfig = "/etc/edgelink/edgelink.toml";

int run(const std::string& path) {
  edgelink::LoadResult r = edgelink::load_config_file(path);
  for (const auto& issue : r.unknown_keys) edgelink::log::warn("config", issue.to_string(), " (ignored)");
  for (const auto& issue : r.warnings) edgelink::log::warn("config", issue.to_string());
  if (!r.config) {
    for (const auto& issue : r.errors) std::cerr << issue.to_string() << "\n";
    std::cerr << "edgelink: " << r.errors.size() << " error(s) in " << path << "; not started\n";
    return 2;
  }
  edgelink::log::set_level(r.config->log.level);
  // Every app, HTTP client and RTIO device is a descriptor; a shell's soft limit of
  // 1024 would cap a gateway with a thousand RTIO devices. The hard limit is the
  // operator's (systemd's LimitNOFILE), so take all of it.
  if (rlimit lim{}; ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  asio::io_context io(1);
  edgelink::Daemon daemon(io, std::move(*r.config));
  auto errors = daemon.start();
  if (!errors.empty()) {
    for (const auto& e : errors) edgelink::log::error("daemon", e);
    return 1;
  }
  io.run();
  return 0;
}

int check(const std::string& path) {
  edgelink::LoadResult r = edgelink::load_config_file(path);
  for (const auto& issue : r.errors) std::cerr << issue.to_string() << "\n";
  for (const auto& issue : r.unknown_keys) std::cerr << issue.to_string() << "\n";
  // Warnings (uplink keys edgelink reads differently or ignores) do not fail the check.
  for (const auto& issue : r.warnings) std::cerr << issue.to_string() << "\n";
  size_t problems = r.errors.size() + r.unknown_keys.size();
  if (r.config) std::cout << edgelink::to_toml(*r.config);
  const std::string warnings = r.warnings.empty() ? "" : " (" + std::to_string(r.warnings.size()) + " warning(s))";
  if (problems) {
    std::cerr << path << ": " << problems << " error(s)" << warnings << "\n";
    return 1;
  }
  std::cerr << path << ": OK" << warnings << "\n";
  return 0;
}

void print_status(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  if (d.HasParseError() || !d.IsObject()) {
    std::cout << json;
    return;
  }
  auto u = [](const rapidjson::Value& o, const char* k) { return o.HasMember(k) ? o[k].GetUint64() : 0; };
  auto s = [](const rapidjson::Value& o, const char* k) { return o.HasMember(k) ? o[k].GetString() : ""; };
  std::printf("edgelink %s  %s/%s  %s, up %lus\n", s(d, "version"), s(d, "project_id"), s(d, "device_id"),
              s(d, "state"), static_cast<unsigned long>(u(d, "uptime_s")));
  const auto& b = d["broker"];
  std::printf("broker   %s  %s  connects %lu  published %lu  acked %lu%s%s\n", s(b, "uri"), s(b, "state"),
              u(b, "connects"), u(b, "published"), u(b, "acked"),
              *s(b, "last_error") ? "  last error: " : "", s(b, "last_error"));
  const auto& o = d["outbox"];
  std::printf("outbox   queued %lu  in flight %lu  %lu/%lu bytes%s\n", u(o, "queued"), u(o, "in_flight"),
              u(o, "bytes"), u(o, "max_bytes"), o["accepting"].GetBool() ? "" : "  (back-pressure on apps)");
  if (d.HasMember("spool") && d["spool"].IsObject()) {
    const auto& sp = d["spool"];
    const auto& fs = sp["fsync"];
    std::printf("spool    %lu/%lu bytes  %lu segments  to replay %lu  replayed %lu (%.1f/s)  dropped %lu  fsync %s %.2f ms%s%s\n",
                u(sp, "bytes"), u(sp, "max_bytes"), u(sp, "segments"), u(sp, "backlog"), u(sp, "replayed"),
                sp["replay_rate"].GetDouble(), u(sp, "dropped"), s(fs, "policy"), fs["mean_ms"].GetDouble(),
                *s(sp, "last_error") ? "  last error: " : "", s(sp, "last_error"));
  }
  // apps, streams and devices are objects keyed by name.
  auto members = [](const rapidjson::Value& o, const char* k) {
    static const rapidjson::Value empty(rapidjson::kObjectType);
    return o.HasMember(k) && o[k].IsObject() ? o[k].GetObject() : empty.GetObject();
  };
  for (const auto& [name, a] : members(d, "apps")) {
    std::string errors;
    for (const auto& e : a["errors"].GetObject())
      errors += std::string(" ") + e.name.GetString() + "=" + std::to_string(e.value.GetUint64());
    const bool listening = std::string_view(s(a, "listener")) != "bind_failed";
    std::printf("app      %-16s %s:%lu  %-12s points %lu  statuses %lu  actions %lu  pending %lu%s%s%s%s\n",
                name.GetString(), s(a, "bind"), u(a, "port"),
                !listening                 ? "bind_failed"
                : a["connected"].GetBool() ? "connected"
                                           : "waiting",
                u(a, "points"), u(a, "statuses"), u(a, "actions_delivered"), u(a, "actions_pending"),
                errors.empty() ? "" : "  errors:", errors.c_str(), listening ? "" : "  retrying: ", s(a, "last_error"));
  }
  for (const auto& [name, st] : members(d, "streams"))
    std::printf("stream   %-16s points %lu  batches %lu  open %lu\n", name.GetString(), u(st, "points"),
                u(st, "batches"), u(st, "open_points"));
  for (const auto& [name, dev] : members(d, "devices")) {
    // Frames lost to the receive limit are a configuration problem worth a glance.
    const uint64_t oversize = dev.HasMember("link_counters") ? u(dev["link_counters"], "oversize_frames") : 0;
    const std::string frames = oversize ? "  oversize frames " + std::to_string(oversize) + " (max_frame_bytes " +
                                              std::to_string(u(dev, "max_frame_bytes")) + ")"
                                        : "";
    std::printf("device   %-16s %s  %-7s resets %lu  log lines %lu%s%s%s\n", name.GetString(), s(dev, "path"),
                s(dev, "state"), u(dev, "resets"), u(dev, "log_lines"), frames.c_str(),
                *s(dev, "last_error") ? "  last error: " : "", s(dev, "last_error"));
    if (!dev.HasMember("rtstreams") || !dev["rtstreams"].IsArray()) continue;
    for (const auto& rs : dev["rtstreams"].GetArray()) {
      std::string where;
      if (rs["tcp"].IsObject())
        where += std::string(" tcp ") + s(rs["tcp"], "bind") + ":" + std::to_string(u(rs["tcp"], "port")) +
                 (rs["tcp"]["client"].GetBool() ? " (client)" : "");
      if (rs["mqtt"].IsObject()) where += " mqtt";
      std::printf("rtstream %-16s %-10s%s  to device %lu  from device %lu  busy %lu  opens %lu%s%s\n", s(rs, "name"),
                  s(rs, "state"), where.c_str(), u(rs, "bytes_out"), u(rs, "bytes_in"), u(rs, "busy"), u(rs, "opens"),
                  *s(rs, "last_error") ? "  last error: " : "", s(rs, "last_error"));
    }
  }
  if (d.HasMember("uploads") && d["uploads"].IsObject()) {
    const auto& up = d["uploads"];
    if (u(up, "keys") || (up.HasMember("active") && up["active"].IsArray() && !up["active"].Empty())) {
      std::printf("uploads  keys %lu  spool %lu bytes  expired %lu\n", u(up, "keys"), u(up, "spool_bytes"),
                  u(up, "expired"));
      for (const auto& a : up["active"].GetArray())
        std::printf("upload   %-16s %s %s  %lu/%lu bytes\n", s(a, "app"), s(a, "route"), s(a, "key"), u(a, "bytes"),
                    u(a, "total"));
    }
  }
  const auto& ac = d["actions"];
  std::printf("actions  in flight %lu  received %lu  completed %lu  failed %lu  timed out %lu  unknown %lu  late %lu\n",
              u(ac, "in_flight"), u(ac, "received"), u(ac, "completed"), u(ac, "failed"), u(ac, "timed_out"),
              u(ac, "unknown_name"), u(ac, "late_statuses"));
  // Only the reasons that happened: the full list is in --json and --metrics.
  if (d.HasMember("counters") && d["counters"].IsObject()) {
    std::string lost;
    for (const char* group : {"dropped", "dropped_bytes", "errors"})
      for (const auto& [reason, n] : members(d["counters"], group))
        if (n.IsUint64() && n.GetUint64()) {
          const char* unit = std::string_view(group) == "dropped_bytes" ? " bytes " : " ";
          lost += std::string("  ") + reason.GetString() + unit + std::to_string(n.GetUint64());
        }
    if (!lost.empty()) std::printf("counters%s\n", lost.c_str());
  }
}

enum class StatusFormat { Human, Json, Metrics };

int status(const std::string& path, StatusFormat format) {
  // Only persistence_path is needed: a running daemon can be asked even when its
  // file has since been edited into an invalid state.
  std::string persistence_path = edgelink::Config{}.persistence_path;
  if (FILE* f = std::fopen(path.c_str(), "r"))
    std::fclose(f);
  else {
    std::cerr << "edgelink: " << path << ": cannot read: " << std::strerror(errno) << "\n";
    return 2;
  }
  try {
    toml::table t = toml::parse_file(path);
    if (auto p = t["persistence_path"].value<std::string>()) persistence_path = *p;
  } catch (const toml::parse_error& e) {
    std::cerr << "edgelink: " << path << ": " << e.description() << "; assuming persistence_path = \""
              << persistence_path << "\"\n";
  }
  std::string out;
  if (!edgelink::fetch_status(edgelink::status_socket_path(persistence_path), out)) {
    std::cerr << "edgelink: " << out << "\n";
    return 1;
  }
  switch (format) {
    case StatusFormat::Json: std::cout << out; break;
    case StatusFormat::Human: print_status(out); break;
    case StatusFormat::Metrics: {
      // Converted here, not in the daemon: the socket serves one thing, the status, and
      // metrics then work without the HTTP listener (node_exporter's textfile collector).
      rapidjson::Document d;
      d.Parse(out.c_str(), out.size());
      if (d.HasParseError() || !d.IsObject()) {
        std::cerr << "edgelink: the daemon's status is not a JSON object\n";
        return 1;
      }
      std::cout << edgelink::http::write_metrics(d);
      break;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edgelink: edge agent daemon (local apps, MCUs and an MQTT broker)"};
  app.require_subcommand(1);
  std::string config = kDefaultConfig;
  bool json = false, metrics = false;

  auto* run_cmd = app.add_subcommand("run", "run the daemon");
  run_cmd->add_option("-c,--config", config, "configuration file")->capture_default_str();
  auto* check_cmd = app.add_subcommand("check", "validate a configuration and print it with defaults filled in");
  check_cmd->add_option("-c,--config", config, "configuration file")->capture_default_str();
  auto* status_cmd = app.add_subcommand("status", "show apps, streams, broker state and counters of a running daemon");
  status_cmd->add_option("-c,--config", config, "configuration file")->capture_default_str();
  auto* json_flag = status_cmd->add_flag("--json", json, "print the status JSON (the model GET /status serves)");
  status_cmd->add_flag("--metrics", metrics, "print the status in Prometheus text format (what GET /metrics serves)")
      ->excludes(json_flag);
  app.add_subcommand("version", "print the version");

  CLI11_PARSE(app, argc, argv);
  try {
    if (run_cmd->parsed()) return run(config);
    if (check_cmd->parsed()) return check(config);
    if (status_cmd->parsed())
      return status(config, json ? StatusFormat::Json : metrics ? StatusFormat::Metrics : StatusFormat::Human);
    std::cout << "edgelink " << EDGELINK_VERSION << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "edgelink: " << e.what() << "\n";
    return 1;
  }
}
