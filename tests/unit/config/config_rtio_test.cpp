// Tests for [rtio] (spec/http-api.md §6.1): values and defaults, every rule with its
// position, the secrets file (format, errors naming FILE:LINE, the permission warning),
// device services, the clash with [devices.X], printing and {rtio_device_id}.

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <string>

#include "config_test_util.hpp"
#include "edgelink/config/config.hpp"

using namespace edgelink;
using namespace edgelink::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kId1 = "cfa09baa-4913-4ad7-a936-3e26f9671b09";
constexpr const char* kId2 = "0b6c2d1e-7f80-4a9b-8c0d-1e2f3a4b5c6d";
constexpr const char* kId3 = "AAAAAAAA-BBBB-CCCC-DDDD-000000000003";
constexpr const char* kSecret = "example-secret-0123456789";

std::string ids() { return kIds; }  // lines 1-2

// Exactly one error, containing `text`, at line:col.
void one_error(const std::string& toml, const std::string& text, int line, int col) {
  INFO(toml);
  const auto r = load(toml);
  INFO(all_issues(r.errors));
  REQUIRE(r.errors.size() == 1);
  CHECK_FALSE(r.config);
  CHECK(r.errors[0].message.find(text) != std::string::npos);
  CHECK(r.errors[0].line == line);
  CHECK(r.errors[0].column == col);
}

Config loaded(const std::string& toml) {
  INFO(toml);
  const auto r = load(toml);
  INFO(all_issues(r.errors));
  REQUIRE(r.config);
  return *r.config;
}

std::string private_file(const TempDir& dir, const std::string& name, const std::string& content) {
  const std::string p = dir.write(name, content);
  REQUIRE(::chmod(p.c_str(), 0600) == 0);
  return p;
}

std::string with_secrets(const std::string& file, const std::string& more = "") {
  return ids() + "[rtio]\nsecrets_file = \"" + file + "\"\n" + more;  // secrets_file on line 4, value at col 16
}

}  // namespace

TEST_CASE("config: [rtio] absent, empty, and every key set", "[config][rtio]") {
  CHECK_FALSE(loaded(ids()).rtio.enabled);

  const Config d = loaded(ids() + "[rtio]\n");
  CHECK(d.rtio.enabled);
  CHECK(d.rtio.bind == "127.0.0.1:17017");
  CHECK(d.rtio.host == "127.0.0.1");
  CHECK(d.rtio.port == 17017);
  CHECK(d.rtio.secrets_file.empty());
  CHECK(d.rtio.verify_timeout == 15000ms);
  CHECK(d.rtio.service_timeout == 5000ms);
  CHECK(d.rtio.max_connections == 64);
  CHECK(d.rtio.devices.empty());
  CHECK(d.rtio.services.empty());

  TempDir dir;
  const std::string file = private_file(dir, "secrets", std::string(kId2) + ":" + std::string(30, 'z') + "\n");
  const Config c = loaded(ids() + "[rtio]\nbind = \"[::1]:2000\"\nsecrets_file = \"" + file +
                          "\"\nverify_timeout = 0.5\nservice_timeout = 2\nmax_connections = 4096\n"
                          "[rtio.devices]\n\"" + kId1 + "\" = \"" + kSecret + "\"\n"
                          "[[rtio.device_services]]\nuri = \"/aa/bb\"\n"
                          "topic = \"/tenants/{tenant_id}/devices/{device_id}/rtio/{rtio_device_id}/aa/bb\"\n"
                          "[[rtio.device_services]]\nuri = \"/greeter\"\ntopic = \"/g\"\n");
  const RtioConfig& r = c.rtio;
  CHECK(r.enabled);
  CHECK(r.bind == "[::1]:2000");
  CHECK(r.host == "::1");
  CHECK(r.port == 2000);
  CHECK(r.secrets_file == file);
  CHECK(r.verify_timeout == 500ms);
  CHECK(r.service_timeout == 2000ms);
  CHECK(r.max_connections == 4096);
  REQUIRE(r.devices.size() == 2);
  CHECK(r.devices.at(kId1) == kSecret);
  CHECK(r.devices.at(kId2) == std::string(30, 'z'));
  CHECK(r.file_devices == std::set<std::string>{kId2});
  REQUIRE(r.services.size() == 2);
  CHECK(r.services[0].uri == "/aa/bb");
  CHECK(r.services[0].topic == "/tenants/{tenant_id}/devices/{device_id}/rtio/{rtio_device_id}/aa/bb");
  CHECK(r.services[1].uri == "/greeter");
  CHECK(r.services[1].topic == "/g");
}

TEST_CASE("config: [rtio] scalar keys and their positions", "[config][rtio]") {
  const std::string s = ids() + "[rtio]\n";  // keys on line 4
  one_error(s + "bind = \"localhost:17017\"\n",
            "rtio.bind: must be \"ADDRESS:PORT\" with an IP address literal (\"127.0.0.1:17017\", \"[::1]:17017\"), "
            "got \"localhost:17017\"",
            4, 8);
  one_error(s + "bind = \"127.0.0.1\"\n", "rtio.bind: must be \"ADDRESS:PORT\"", 4, 8);
  one_error(s + "bind = \"127.0.0.1:0\"\n", "rtio.bind: must be \"ADDRESS:PORT\"", 4, 8);
  one_error(s + "bind = 17017\n", "rtio.bind: must be a string, got an integer", 4, 8);
  one_error(s + "verify_timeout = 0.05\n", "rtio.verify_timeout: must be a number of seconds from 0.1 to 3600, got 0.05",
            4, 18);
  one_error(s + "verify_timeout = 3601\n", "rtio.verify_timeout: must be a number of seconds from 0.1 to 3600", 4, 18);
  one_error(s + "verify_timeout = \"15\"\n", "rtio.verify_timeout: must be a number of seconds", 4, 18);
  one_error(s + "service_timeout = 0\n", "rtio.service_timeout: must be a number of seconds > 0", 4, 19);
  one_error(s + "service_timeout = 3600.5\n", "rtio.service_timeout: must be a number of seconds from 0.1 to 3600", 4, 19);
  one_error(s + "max_connections = 0\n", "rtio.max_connections: must be an integer 1..4096, got 0", 4, 19);
  one_error(s + "max_connections = 4097\n", "rtio.max_connections: must be an integer 1..4096, got 4097", 4, 19);
  one_error(ids() + "rtio = 1\n", "rtio: must be a table, got an integer", 3, 8);

  const Config edge = loaded(s + "verify_timeout = 0.1\nservice_timeout = 3600\nmax_connections = 1\n"
                                 "bind = \"0.0.0.0:1\"\n");
  CHECK(edge.rtio.verify_timeout == 100ms);
  CHECK(edge.rtio.service_timeout == 3600000ms);
  CHECK(edge.rtio.max_connections == 1);
  CHECK(edge.rtio.host == "0.0.0.0");
  CHECK(edge.rtio.port == 1);

  // The shared bind reader still names [http]'s own default.
  one_error(ids() + "[http]\nbind = \"x\"\n", "http.bind: must be \"ADDRESS:PORT\" with an IP address literal "
                                              "(\"127.0.0.1:17917\", \"[::1]:17917\"), got \"x\"", 4, 8);
  one_error(ids() + "[http]\ncopost_timeout = 0.09\n", "http.copost_timeout: must be a number of seconds from 0.1 to 3600",
            4, 18);
}

TEST_CASE("config: [rtio] unknown keys are listed, enabled is not a key", "[config][rtio]") {
  const auto r = load(ids() + "[rtio]\nenabled = true\nport = 1\n[[rtio.device_services]]\nuri = \"/aa/bb\"\n"
                              "topic = \"/t\"\nqos = 1\n");
  INFO(all_issues(r.errors));
  REQUIRE(r.config);
  REQUIRE(r.unknown_keys.size() == 3);
  CHECK(r.unknown_keys[0].to_string() == "test.toml:4:1: unknown key 'enabled' in [rtio]");
  CHECK(r.unknown_keys[1].to_string() == "test.toml:5:1: unknown key 'port' in [rtio]");
  CHECK(r.unknown_keys[2].to_string() == "test.toml:9:1: unknown key 'qos' in rtio.device_services[0]");
  CHECK(r.config->rtio.services.size() == 1);
}

TEST_CASE("config: [rtio.devices] ids and secrets", "[config][rtio]") {
  const std::string s = ids() + "[rtio]\n[rtio.devices]\n";  // entries on line 5
  auto entry = [](const std::string& id, const std::string& secret) {
    return "\"" + id + "\" = \"" + secret + "\"\n";
  };
  const std::string id35(35, 'a'), id37(37, 'a');
  one_error(s + entry(id35, kSecret), "rtio.devices." + id35 + ": device id must be 36 letters, digits or '-' (a UUID)",
            5, 1);
  one_error(s + entry(id37, kSecret), "device id must be 36 letters, digits or '-'", 5, 1);
  one_error(s + entry("cfa09baa_4913_4ad7_a936_3e26f9671b09", kSecret), "device id must be 36", 5, 1);
  one_error(s + entry("cfa09baa.4913-4ad7-a936-3e26f9671b09", kSecret), "device id must be 36", 5, 1);
  const int value_col = 42;  // after the quoted 36-character key and " = "
  one_error(s + entry(kId1, std::string(23, 's')),
            std::string("rtio.devices.") + kId1 + ": the secret must be 24..64 printable ASCII characters, got 23 bytes",
            5, value_col);
  one_error(s + entry(kId1, std::string(65, 's')), "got 65 bytes", 5, value_col);
  one_error(s + entry(kId1, std::string(24, 's') + " x"), "printable ASCII characters (0x21..0x7E; no spaces)", 5,
            value_col);
  one_error(s + entry(kId1, std::string(24, 's') + "\\t"), "(0x21..0x7E; no spaces)", 5, value_col);
  one_error(s + entry(kId1, std::string(24, 's') + "\xc3\xa9"), "(0x21..0x7E; no spaces)", 5, value_col);
  one_error(s + "\"" + kId1 + "\" = 5\n", "must be a string, got an integer", 5, value_col);
  one_error(ids() + "[rtio]\ndevices = 5\n", "rtio.devices: must be a table, got an integer", 4, 11);

  // The secret never appears in a message.
  const auto bad = load(s + entry(kId1, "short-secret-XYZ"));
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].message.find("short-secret-XYZ") == std::string::npos);

  const Config c = loaded(s + entry(kId1, std::string(24, '!')) + entry(kId3, std::string(64, '~')) +
                          entry(kId2, "a:b#c\\\"d'e" + std::string(20, 'f')));
  CHECK(c.rtio.devices.size() == 3);
  CHECK(c.rtio.devices.at(kId1) == std::string(24, '!'));
  CHECK(c.rtio.devices.at(kId3) == std::string(64, '~'));
  CHECK(c.rtio.devices.at(kId2) == "a:b#c\"d'e" + std::string(20, 'f'));
  CHECK(c.rtio.file_devices.empty());
}

TEST_CASE("config: rtio.secrets_file", "[config][rtio]") {
  TempDir dir;
  const int l = 4, col = 16;  // the secrets_file value

  SECTION("comments, blank lines, CRLF, trailing comments, '#' and ':' inside a secret") {
    const std::string file = private_file(dir, "s",
                                          "# devices of line 3\n"
                                          "\n"
                                          "   \t\n" +
                                              std::string(kId1) + ":" + kSecret + "\r\n" + "  " + kId2 +
                                              ":pa#ss:word-0123456789abcdef   # the second\n" + kId3 + ":" +
                                              std::string(64, 'x'));  // no final newline
    const auto r = load(with_secrets(file));
    INFO(all_issues(r.errors));
    REQUIRE(r.config);
    CHECK(r.warnings.empty());
    const RtioConfig& c = r.config->rtio;
    REQUIRE(c.devices.size() == 3);
    CHECK(c.devices.at(kId1) == kSecret);
    CHECK(c.devices.at(kId2) == "pa#ss:word-0123456789abcdef");
    CHECK(c.devices.at(kId3) == std::string(64, 'x'));
    CHECK(c.file_devices.size() == 3);
  }
  SECTION("an empty file is fine") {
    const Config c = loaded(with_secrets(private_file(dir, "s", "")));
    CHECK(c.rtio.devices.empty());
  }
  SECTION("unreadable") {
    one_error(with_secrets(dir.path + "/none"),
              "rtio.secrets_file: cannot read \"" + dir.path + "/none\": No such file or directory", l, col);
    one_error(with_secrets(dir.path), "Is a directory", l, col);
  }
  SECTION("each bad line is an error naming FILE:LINE, never the secret") {
    const std::string file = private_file(dir, "s",
                                          "# header\n"
                                          "no-colon-here\n" +                                               // 2
                                              std::string(35, 'a') + ":" + kSecret + "\n" +                // 3
                                              std::string(kId1) + ":short-secret\n" +                      // 4
                                              std::string(kId1) + ":" + std::string(65, 'L') + "\n" +      // 5
                                              std::string(kId1) + ":" + kSecret + " trailing-text\n" +     // 6
                                              std::string(kId1) + ":" + kSecret + "\n" +                   // 7: ok
                                              std::string(kId1) + ":" + std::string(30, 'q') + "\n" +      // 8: dup
                                              std::string(kId2) + ":" + std::string(23, 'q') + "\x7f\n" +  // 9
                                              "cfa09baa_4913-4ad7-a936-3e26f9671b09:" + kSecret + "\n");   // 10
    const auto r = load(with_secrets(file));
    INFO(all_issues(r.errors));
    CHECK_FALSE(r.config);
    REQUIRE(r.errors.size() == 8);
    for (const auto& e : r.errors) {
      CHECK(e.line == l);
      CHECK(e.column == col);
      CHECK(e.message.rfind("rtio.secrets_file: " + file + ":", 0) == 0);
      CHECK(e.message.find("short-secret") == std::string::npos);
      CHECK(e.message.find(kSecret) == std::string::npos);
      CHECK(e.message.find("qqqqqqqq") == std::string::npos);
      CHECK(e.message.find("cfa09baa_") == std::string::npos);
    }
    CHECK(r.errors[0].message == "rtio.secrets_file: " + file + ":2: expected \"<device id>:<secret>\"");
    CHECK(r.errors[1].message.find(file + ":3: the device id before the first ':' must be 36 letters, digits or "
                                   "'-' (a UUID), got 35 characters") != std::string::npos);
    CHECK(r.errors[2].message.find(file + ":4: the secret of \"" + std::string(kId1) +
                                   "\" must be 24..64 printable ASCII characters, got 12 bytes") != std::string::npos);
    CHECK(r.errors[3].message.find(file + ":5: the secret of") != std::string::npos);
    CHECK(r.errors[3].message.find("got 65 bytes") != std::string::npos);
    CHECK(r.errors[4].message.find(file + ":6: unexpected text after the secret") != std::string::npos);
    CHECK(r.errors[5].message.find(file + ":8: device id \"" + std::string(kId1) + "\" is already on line 7") !=
          std::string::npos);
    CHECK(r.errors[6].message.find(file + ":9: the secret of \"" + std::string(kId2) + "\" must be") !=
          std::string::npos);
    CHECK(r.errors[7].message.find(file + ":10: the device id before the first ':' must be 36 letters, digits or "
                                   "'-' (a UUID), got a character not allowed at position 9") != std::string::npos);
  }
  SECTION("an id in both [rtio.devices] and the file is an error on the table entry") {
    const std::string file = private_file(dir, "s", "\n\n" + std::string(kId1) + ":" + std::string(30, 'f') + "\n");
    one_error(with_secrets(file, "[rtio.devices]\n\"" + std::string(kId1) + "\" = \"" + kSecret + "\"\n"),
              std::string("rtio.devices.") + kId1 + ": device id is also in rtio.secrets_file (" + file +
                  ":3); give each id once",
              6, 1);
    // Also when the table comes before the key in the file.
    one_error(ids() + "[rtio.devices]\n\"" + kId1 + "\" = \"" + kSecret + "\"\n[rtio]\nsecrets_file = \"" + file +
                  "\"\n",
              std::string("rtio.devices.") + kId1 + ": device id is also in rtio.secrets_file", 4, 1);
  }
  SECTION("readable by group or others: a warning, the config still loads") {
    const std::string file = private_file(dir, "s", std::string(kId1) + ":" + kSecret + "\n");
    for (const mode_t mode : {0640, 0604, 0644}) {
      REQUIRE(::chmod(file.c_str(), mode) == 0);
      const auto r = load(with_secrets(file));
      REQUIRE(r.config);
      REQUIRE(r.warnings.size() == 1);
      CHECK(r.warnings[0].line == l);
      CHECK(r.warnings[0].column == 1);
      CHECK(r.warnings[0].message.find("rtio.secrets_file: \"" + file + "\" is readable by group or others (mode 0") !=
            std::string::npos);
      CHECK(r.warnings[0].message.find("chmod 600") != std::string::npos);
    }
    for (const mode_t mode : {0600, 0400, 0620}) {
      REQUIRE(::chmod(file.c_str(), mode) == 0);
      const auto r = load(with_secrets(file));
      REQUIRE(r.config);
      CHECK(r.warnings.empty());
    }
  }
}

TEST_CASE("config: rtio.device_services", "[config][rtio]") {
  const std::string s = ids() + "[rtio]\n[[rtio.device_services]]\n";  // keys on lines 5, 6
  auto svc = [](const std::string& uri, const std::string& topic = "/t") {
    return "uri = \"" + uri + "\"\ntopic = \"" + topic + "\"\n";
  };
  one_error(s + svc("/abc"), "rtio.device_services[0].uri: must be 5..128 bytes, got 4 (\"/abc\")", 5, 7);
  one_error(s + svc("/" + std::string(128, 'u')), "must be 5..128 bytes, got 129", 5, 7);
  one_error(s + "uri = 5\ntopic = \"/t\"\n", "rtio.device_services[0].uri: must be a string", 5, 7);
  one_error(s + "topic = \"/t\"\n", "rtio.device_services[0].uri: required key is missing", 4, 1);
  one_error(s + "uri = \"/aa/bb\"\n", "rtio.device_services[0].topic: required key is missing", 4, 1);
  one_error(s + svc("/aa/bb", "/t/{stream}"),
            "rtio.device_services[0].topic: unknown placeholder \"{stream}\"; expected {tenant_id}, {device_id} or "
            "{rtio_device_id}",
            6, 9);
  one_error(s + svc("/aa/bb", "/t/#"), "must not contain the MQTT wildcards", 6, 9);
  one_error(s + svc("/aa/bb", "/t/+/x"), "must not contain the MQTT wildcards", 6, 9);
  one_error(ids() + "[rtio]\ndevice_services = 1\n", "rtio.device_services: must be an array of tables", 4, 19);
  one_error(ids() + "[rtio]\ndevice_services = [1]\n", "rtio.device_services[0]: must be a table", 4, 20);

  // Unique uris, and unique digests: "/ux83n" and "/i7d2z" share CRC-32 0xAC986CCB.
  one_error(s + svc("/aa/bb") + "[[rtio.device_services]]\n" + svc("/aa/bb", "/u"),
            "rtio.device_services[1].uri: \"/aa/bb\" is already rtio.device_services[0].uri", 8, 7);
  one_error(s + svc("/ux83n") + "[[rtio.device_services]]\n" + svc("/i7d2z", "/u"),
            "rtio.device_services[1].uri: \"/i7d2z\" has the same CRC-32 (0xAC986CCB) as rtio.device_services[0].uri "
            "\"/ux83n\"",
            8, 7);

  // {rtio_device_id} belongs to these topics only.
  one_error(ids() + "presence_topic = \"/p/{rtio_device_id}\"\n", "unknown placeholder \"{rtio_device_id}\"", 3, 18);
  one_error(ids() + "[streams.s]\ntopic = \"/{rtio_device_id}\"\n", "unknown placeholder \"{rtio_device_id}\"", 4, 9);

  const Config c = loaded(s + svc("/" + std::string(127, 'u'), "{rtio_device_id}") + "[[rtio.device_services]]\n" +
                          svc("/abcd", "/x/{tenant_id}/{device_id}"));
  REQUIRE(c.rtio.services.size() == 2);
  CHECK(c.rtio.services[0].uri.size() == 128);
  CHECK(c.rtio.services[1].uri == "/abcd");
}

TEST_CASE("config: an RTIO device id cannot also name a [devices.X] device", "[config][rtio]") {
  const std::string dev = std::string("[devices.") + kId1 + "]\npath = \"/dev/ttyACM0\"\n";
  const std::string rtio = std::string("[rtio.devices]\n\"") + kId1 + "\" = \"" + kSecret + "\"\n";
  // [devices] first: the [rtio.devices] entry is on line 6.
  one_error(ids() + dev + rtio,
            std::string("rtio.devices.") + kId1 + ": RTIO device id \"" + kId1 + "\" is also the name of [devices." +
                kId1 + "]",
            6, 1);
  // [rtio] first, and a device whose table has errors still counts.
  const auto r = load(ids() + rtio + std::string("[devices.") + kId1 + "]\npath = \"relative\"\n");
  REQUIRE(r.errors.size() == 2);
  CHECK(r.errors[0].line == 4);
  CHECK(r.errors[0].message.find("is also the name of [devices.") != std::string::npos);

  TempDir dir;
  const std::string file = private_file(dir, "s", "\n" + std::string(kId1) + ":" + kSecret + "\n");
  one_error(with_secrets(file) + dev, "rtio.secrets_file: " + file + ":2: RTIO device id \"" + kId1 +
                                          "\" is also the name of [devices.",
            4, 16);
  // Other names are fine.
  CHECK(load(ids() + rtio + "[devices.mcu1]\npath = \"/dev/ttyACM0\"\n").config);
}

TEST_CASE("config: to_toml prints [rtio] with secrets redacted and loads back", "[config][rtio]") {
  TempDir dir;
  const std::string file = private_file(dir, "s", std::string(kId2) + ":" + std::string(40, 'F') + "\n");
  const Config first = loaded(ids() + "[rtio]\nbind = \"127.0.0.2:1234\"\nsecrets_file = \"" + file +
                              "\"\nverify_timeout = 0.25\nservice_timeout = 7\nmax_connections = 9\n"
                              "[rtio.devices]\n\"" + kId1 + "\" = \"" + kSecret + "\"\n"
                              "[[rtio.device_services]]\nuri = \"/aa/bb\"\ntopic = \"/r/{rtio_device_id}\"\n"
                              "[[rtio.device_services]]\nuri = \"/rainbow\"\ntopic = \"/rb\"\n");
  const std::string out = to_toml(first);
  INFO(out);
  CHECK(out.find(kSecret) == std::string::npos);
  CHECK(out.find("FFFFFFFF") == std::string::npos);
  CHECK(out.find("\n[rtio]\nbind = \"127.0.0.2:1234\"\nsecrets_file = \"" + file +
                 "\"\nverify_timeout = 0.25\nservice_timeout = 7\nmax_connections = 9\n") != std::string::npos);
  // Only the table's id is listed; the file's comes back through secrets_file.
  CHECK(out.find(std::string("\n[rtio.devices]\n") + kId1 + " = \"<redacted-device-secret>\"\n") != std::string::npos);
  CHECK(out.find(kId2) == std::string::npos);
  CHECK(out.find("\n[[rtio.device_services]]\nuri = \"/aa/bb\"\ntopic = \"/r/{rtio_device_id}\"\n") !=
        std::string::npos);

  const auto back = load_config_string(out, "printed.toml");
  INFO(all_issues(back.errors));
  REQUIRE(back.config);
  CHECK(back.unknown_keys.empty());
  RtioConfig expect = first.rtio;
  expect.devices[kId1] = "<redacted-device-secret>";
  CHECK(back.config->rtio == expect);

  // Without [rtio] nothing is printed; with an empty one, the defaults.
  CHECK(to_toml(loaded(ids())).find("[rtio") == std::string::npos);
  const std::string empty = to_toml(loaded(ids() + "[rtio]\n"));
  CHECK(empty.find("\n[rtio]\nbind = \"127.0.0.1:17017\"\nverify_timeout = 15\nservice_timeout = 5\n"
                   "max_connections = 64\n") != std::string::npos);
  CHECK(empty.find("[rtio.devices]") == std::string::npos);
  CHECK(load_config_string(empty, "x").config->rtio.enabled);
}

TEST_CASE("config: expand_topic with an RTIO device id", "[config][rtio]") {
  Config c;
  c.project_id = "demo";
  c.device_id = "gw-001";
  CHECK(expand_topic("/tenants/{tenant_id}/devices/{device_id}/rtio/{rtio_device_id}/aa/bb", c, {}, kId1) ==
        std::string("/tenants/demo/devices/gw-001/rtio/") + kId1 + "/aa/bb");
  CHECK(expand_topic("{rtio_device_id}{rtio_device_id}", c, {}, "x") == "xx");
  CHECK(expand_topic("/{rtio_device_id", c, {}, "x") == "/{rtio_device_id");
  // Substituted text is not expanded again.
  CHECK(expand_topic("/{rtio_device_id}/{device_id}", c, {}, "{device_id}") == "/{device_id}/gw-001");
  // The other overload leaves the placeholder alone.
  CHECK(expand_topic("/a/{rtio_device_id}", c) == "/a/{rtio_device_id}");
  CHECK(expand_topic("/a/{rtio_device_id}", c, "s") == "/a/{rtio_device_id}");
}
