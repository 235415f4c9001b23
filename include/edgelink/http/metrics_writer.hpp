#pragma once
// The status document (Daemon::status_document(), or the JSON `edgelink status --json`
// prints, parsed again) as Prometheus text exposition format 0.0.4: GET /metrics and
// `edgelink status --metrics` (the node_exporter textfile collector). Pure: a document
// in, text out, so the metrics can only say what the status says.
//
// Every family of spec/http-api.md §3.2 plus one for every other counter and gauge of
// the document, all named edgelink_*; counters end in _total. Every family always has
// its # HELP and # TYPE lines, in a fixed order, once; a section that is absent (no
// "http" while the HTTP API is off) leaves its families without samples, which the
// format allows. Sections read from the HTTP API and the RTIO server, when present:
//
//   "http": {"requests_by": {"<kind>": {"<code>": n}},
//            "devices": {"<device>": {"observers": n,
//                                     "results": {"ok": n, "fail": n, "timeout": n, "offline": n},
//                                     "observers_ended": {"<reason>": n}}}}
//     -> edgelink_http_requests_total{kind,code}, edgelink_http_observers{device},
//        edgelink_device_requests_total{device,result},
//        edgelink_http_observers_ended_total{device,reason}
//   "rtio": {"connections": {"<result>": n}, "device_copost": {"<uri>": {"<status>": n}}}
//     -> edgelink_rtio_connections_total{result}, edgelink_rtio_device_copost_total{uri,status}
//   "counters": {"http_status": {"<status>": n}} -> edgelink_http_responses_total{code}
//
// Numbers are written as integers when the JSON holds an integer, otherwise in the
// shortest form that reads back exactly (NaN, +Inf, -Inf as the format spells them).

#include <string>

#include <rapidjson/document.h>

namespace edgelink::http {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string write_metrics(const rapidjson::Value& status);

}  // namespace edgelink::http
