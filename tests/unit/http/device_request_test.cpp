#include "edgelink/http/device_request.hpp"

#include <catch2/catch.hpp>

#include <string>

#include "edgelink/http/base64.hpp"

using namespace edgelink::http;
using namespace std::string_literals;

namespace {

// A valid body grown to exactly `size` bytes with an ignored member.
std::string body_of_size(size_t size) {
  const std::string head = R"({"method":"copost","id":1,"uri":"/rainbow","data":"aGVsbG8=","pad":")";
  const std::string tail = "\"}";
  REQUIRE(size >= head.size() + tail.size());
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

BodyError parse(std::string_view body) {
  DeviceRequestBody out;
  return parse_device_request(body, out);
}

DeviceRequestBody parsed(std::string_view body) {
  DeviceRequestBody out;
  REQUIRE(parse_device_request(body, out) == BodyError::None);
  return out;
}

DeviceRequestBody request(std::string method, std::string uri, std::string data) {
  DeviceRequestBody b;
  b.method = std::move(method);
  b.id = 7;
  b.uri = std::move(uri);
  b.data = std::move(data);
  return b;
}

}  // namespace

TEST_CASE("to_string(Code) gives RTIO's wire names", "[http]") {
  CHECK(std::string(to_string(Code::InternalServerError)) == "INTERNAL_SERVER_ERROR");
  CHECK(std::string(to_string(Code::Ok)) == "OK");
  CHECK(std::string(to_string(Code::DeviceIdOffline)) == "DEVICEID_OFFLINE");
  CHECK(std::string(to_string(Code::DeviceIdTimeout)) == "DEVICEID_TIMEOUT");
  CHECK(std::string(to_string(Code::Continue)) == "CONTINUE");
  CHECK(std::string(to_string(Code::Terminate)) == "TERMINATE");
  CHECK(std::string(to_string(Code::NotFound)) == "NOT_FOUND");
  CHECK(std::string(to_string(Code::BadRequest)) == "BAD_REQUEST");
  CHECK(std::string(to_string(Code::MethodNotAllowed)) == "METHOD_NOT_ALLOWED");
  CHECK(std::string(to_string(Code::TooManyRequests)) == "TOO_MANY_REQUESTS");
  CHECK(std::string(to_string(Code::TooManyObservers)) == "TOO_MANY_OBSERVERS");
  CHECK(std::string(to_string(Code::RequestTimeout)) == "REQUEST_TIMEOUT");
}

TEST_CASE("body_error_text gives RTIO's 400 texts", "[http]") {
  CHECK(std::string(body_error_text(BodyError::TooLong)) == "Read body failed\n");
  CHECK(std::string(body_error_text(BodyError::BadJson)) == "Read body json unmarshall failed\n");
  CHECK(std::string(body_error_text(BodyError::None)).empty());
}

TEST_CASE("parse_device_request reads the four fields of RTIO's example", "[http]") {
  const auto b = parsed(R"({"method":"copost","id":12667,"uri":"/rainbow","data":"aGVsbG8="})");
  CHECK(b.method == "copost");
  CHECK(b.id == 12667);
  CHECK(b.uri == "/rainbow");
  CHECK(b.data == "aGVsbG8=");
}

TEST_CASE("parse_device_request: a body of 864 bytes is read, 865 is too long", "[http]") {
  const std::string at_limit = body_of_size(864);
  REQUIRE(at_limit.size() == kMaxBodyBytes);
  CHECK(parsed(at_limit).uri == "/rainbow");
  CHECK(parse(body_of_size(865)) == BodyError::TooLong);
  // Length is judged before syntax.
  CHECK(parse(std::string(865, '{')) == BodyError::TooLong);
  CHECK(parse(std::string(864, ' ')) == BodyError::BadJson);
}

TEST_CASE("parse_device_request: missing fields, null and unknown keys", "[http]") {
  CHECK(parsed("{}") == DeviceRequestBody{});
  CHECK(parsed(R"({"method":null,"id":null,"uri":null,"data":null})") == DeviceRequestBody{});
  const auto b = parsed(R"({"other":[1,{"id":"x","method":5}],"x":true,"y":null,"z":1.5e3,"uri":"/v"})");
  CHECK(b.uri == "/v");
  CHECK(b.method.empty());
  CHECK(b.id == 0);
  CHECK(b.data.empty());
  // null leaves an earlier value, as Go's json does.
  CHECK(parsed(R"({"uri":"/v","uri":null})").uri == "/v");
}

TEST_CASE("parse_device_request: keys are case-sensitive and the last repeated key counts", "[http]") {
  const auto b = parsed(R"({"Method":"obget","ID":5,"URI":"/x","Data":"AA=="})");
  CHECK(b == DeviceRequestBody{});
  const auto d = parsed(R"({"method":"obget","method":"copost","id":1,"id":2,"uri":"/a","uri":"/b"})");
  CHECK(d.method == "copost");
  CHECK(d.id == 2);
  CHECK(d.uri == "/b");
  // A key spelled with escapes is the same key.
  CHECK(parsed(R"({"m\u0065thod":"obget"})").method == "obget");
  CHECK(parsed(R"({"method\u0000":"obget"})").method.empty());
}

TEST_CASE("parse_device_request: id is an integer 0..4294967295", "[http]") {
  CHECK(parsed(R"({"id":0})").id == 0);
  CHECK(parsed(R"({"id":4294967295})").id == 4294967295u);
  CHECK(parsed(R"({"id": 12 })").id == 12);
  for (const char* bad : {R"({"id":4294967296})", R"({"id":-1})", R"({"id":-0})", R"({"id":1.0})",
                          R"({"id":1e2})", R"({"id":1E2})", R"({"id":"1"})", R"({"id":true})", R"({"id":[1]})",
                          R"({"id":{}})", R"({"id":99999999999999999999})", R"({"id":01})"}) {
    INFO(bad);
    CHECK(parse(bad) == BodyError::BadJson);
  }
}

TEST_CASE("parse_device_request: method, uri and data must be strings", "[http]") {
  for (const char* bad : {R"({"method":1})", R"({"method":true})", R"({"uri":["/v"]})", R"({"uri":{}})",
                          R"({"data":false})", R"({"data":0})", R"({"data":{"a":1}})"}) {
    INFO(bad);
    CHECK(parse(bad) == BodyError::BadJson);
  }
}

TEST_CASE("parse_device_request: the body is exactly one JSON object", "[http]") {
  for (const std::string& bad :
       {""s, " "s, "[]"s, R"("copost")"s, "1"s, "null"s, "true"s, "{} {}"s, "{}x"s, "{}\0"s, "{\0}"s,
        R"({"method":"copost",})"s, R"({"method":"copost"} // c)"s, "/* c */ {}"s, R"({"id":NaN})"s,
        R"({"id":Infinity})"s, R"({'method':'copost'})"s, R"({"method":"copost")"s, "{\"uri\":\"a\nb\"}"s,
        R"({"x":1e400})"s}) {
    INFO(bad);
    CHECK(parse(bad) == BodyError::BadJson);
  }
  CHECK(parsed(" \t\r\n{\"uri\":\"/v\"}\n ").uri == "/v");
}

TEST_CASE("parse_device_request keeps invalid UTF-8 and escaped bytes as they are", "[http]") {
  CHECK(parsed("{\"uri\":\"/\xff\xfe\"}").uri == "/\xff\xfe");
  CHECK(parsed(R"({"uri":"/a\u0000b\u00e9"})").uri == "/a\0b\xc3\xa9"s);
}

TEST_CASE("parse_device_request leaves the output alone on failure", "[http]") {
  DeviceRequestBody out = request("copost", "/keep", "");
  CHECK(parse_device_request(R"({"uri":"/new","id":-1})", out) == BodyError::BadJson);
  CHECK(out.uri == "/keep");
}

TEST_CASE("check_device_request: method is exactly copost or obget", "[http]") {
  const auto copost = check_device_request(request("copost", "/rainbow", "aGVsbG8="), kMinUriRtio);
  CHECK(copost.code == Code::Ok);
  CHECK(copost.method == Method::Copost);
  CHECK(copost.data == "hello");
  const auto obget = check_device_request(request("obget", "/rainbow", ""), kMinUriRtio);
  CHECK(obget.code == Code::Ok);
  CHECK(obget.method == Method::Obget);
  CHECK(obget.data.empty());
  for (const char* m : {"get", "", "COPOST", "Copost", "copost ", "obget\n", "post"}) {
    INFO(m);
    CHECK(check_device_request(request(m, "/rainbow", ""), kMinUriRtio).code == Code::MethodNotAllowed);
  }
}

TEST_CASE("check_device_request: uri length depends on the minimum given", "[http]") {
  CHECK(check_device_request(request("copost", "/abc", ""), kMinUriRtio).code == Code::BadRequest);
  CHECK(check_device_request(request("copost", "/abcd", ""), kMinUriRtio).code == Code::Ok);
  CHECK(check_device_request(request("copost", "/v", ""), kMinUriRicrest).code == Code::Ok);
  CHECK(check_device_request(request("copost", "/", ""), kMinUriRicrest).code == Code::BadRequest);
  CHECK(check_device_request(request("copost", "", ""), kMinUriRicrest).code == Code::BadRequest);
  const std::string max_uri = "/" + std::string(127, 'u');
  CHECK(check_device_request(request("copost", max_uri, ""), kMinUriRtio).code == Code::Ok);
  CHECK(check_device_request(request("copost", max_uri + "u", ""), kMinUriRtio).code == Code::BadRequest);
  CHECK(check_device_request(request("obget", max_uri + "u", ""), kMinUriRicrest).code == Code::BadRequest);
}

TEST_CASE("check_device_request: data at most 672 characters and 504 decoded bytes", "[http]") {
  const std::string bytes504(504, '\xa5');
  const std::string data672 = base64_encode(bytes504);
  REQUIRE(data672.size() == kMaxDataChars);
  const auto ok = check_device_request(request("copost", "/rainbow", data672), kMinUriRtio);
  CHECK(ok.code == Code::Ok);
  CHECK(ok.data == bytes504);
  // 673 characters, whatever they are.
  CHECK(check_device_request(request("copost", "/rainbow", data672 + "\n"), kMinUriRtio).code == Code::BadRequest);
  CHECK(check_device_request(request("copost", "/rainbow", std::string(673, 'A')), kMinUriRtio).code ==
        Code::BadRequest);
  // Line breaks count as characters but not as data (Go skips them).
  const std::string broken = data672.substr(0, 668) + "\r\n";
  const auto with_breaks = check_device_request(request("copost", "/rainbow", broken), kMinUriRtio);
  CHECK(with_breaks.code == Code::Ok);
  CHECK(with_breaks.data == std::string(501, '\xa5'));
}

TEST_CASE("check_device_request: data must be padded standard base64", "[http]") {
  for (const char* bad : {"aGVsbG8", "aGVsbG8=x", "aGV sbG8=", "aGVs-G8=", "=", "Zg=", "Z==="}) {
    INFO(bad);
    CHECK(check_device_request(request("copost", "/rainbow", bad), kMinUriRtio).code == Code::BadRequest);
  }
}

TEST_CASE("check_device_request applies rows 6 to 9 in order", "[http]") {
  // A bad method wins over a bad uri and bad data; a bad uri wins over bad data.
  CHECK(check_device_request(request("get", "", "!"), kMinUriRtio).code == Code::MethodNotAllowed);
  CHECK(check_device_request(request("obget", "", "!"), kMinUriRtio).code == Code::BadRequest);
}

TEST_CASE("valid_device_id: 1..64 bytes of letters, digits, '.', '_' and '-'", "[http]") {
  CHECK(valid_device_id("mcu1"));
  CHECK(valid_device_id("cfa09baa-4913-4ad7-a936-3e26f9671b09"));
  CHECK(valid_device_id("A.b_c-9"));
  CHECK(valid_device_id("x"));
  CHECK(valid_device_id(std::string(64, 'a')));
  CHECK_FALSE(valid_device_id(std::string(65, 'a')));
  CHECK_FALSE(valid_device_id(""));
  for (const std::string& bad : {"a%20b"s, "a b"s, "a/b"s, "a+b"s, "ä"s, "a\0b"s, "a:b"s, "a~b"s}) {
    INFO(bad);
    CHECK_FALSE(valid_device_id(bad));
  }
}

TEST_CASE("first_path_segment takes the device id from a request target", "[http]") {
  CHECK(first_path_segment("/mcu1") == "mcu1");
  CHECK(first_path_segment("/mcu1/x?y=1") == "mcu1");
  CHECK(first_path_segment("/mcu1?y=1") == "mcu1");
  CHECK(first_path_segment("/mcu1#frag") == "mcu1");
  CHECK(first_path_segment("/mcu1/") == "mcu1");
  CHECK(first_path_segment("/a%20b") == "a%20b");
  CHECK(first_path_segment("/") == "");
  CHECK(first_path_segment("//mcu1") == "");
  CHECK(first_path_segment("/?x") == "");
  CHECK(first_path_segment("") == "");
  CHECK(first_path_segment("*") == "");
  CHECK(first_path_segment("http://host/mcu1") == "");
}

TEST_CASE("copost_reply_json writes RTIO's reply byte for byte", "[http]") {
  CHECK(copost_reply_json(12667, 0, Code::Ok, "world") == R"({"id":12667,"fid":0,"code":"OK","data":"d29ybGQ="})");
  CHECK(copost_reply_json(0, 0, Code::RequestTimeout, "") == R"({"id":0,"fid":0,"code":"REQUEST_TIMEOUT","data":""})");
  CHECK(copost_reply_json(4294967295u, 4294967295u, Code::Continue, "\x01\x02") ==
        R"({"id":4294967295,"fid":4294967295,"code":"CONTINUE","data":"AQI="})");
  CHECK(copost_reply_json(2, 7, Code::DeviceIdOffline, ""s) == R"({"id":2,"fid":7,"code":"DEVICEID_OFFLINE","data":""})");
}
