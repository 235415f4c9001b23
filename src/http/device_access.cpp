#include "edgelink/http/device_access.hpp"

namespace edgelink::http {

const char* to_string(Code code) {
  switch (code) {
    case Code::InternalServerError: return "INTERNAL_SERVER_ERROR";
    case Code::Ok: return "OK";
    case Code::DeviceIdOffline: return "DEVICEID_OFFLINE";
    case Code::DeviceIdTimeout: return "DEVICEID_TIMEOUT";
    case Code::Continue: return "CONTINUE";
    case Code::Terminate: return "TERMINATE";
    case Code::NotFound: return "NOT_FOUND";
    case Code::BadRequest: return "BAD_REQUEST";
    case Code::MethodNotAllowed: return "METHOD_NOT_ALLOWED";
    case Code::TooManyRequests: return "TOO_MANY_REQUESTS";
    case Code::TooManyObservers: return "TOO_MANY_OBSERVERS";
    case Code::RequestTimeout: return "REQUEST_TIMEOUT";
  }
  // Not a value of the enum (a cast gone wrong): still a name RTIO clients know.
  return "INTERNAL_SERVER_ERROR";
}

}  // namespace edgelink::http
