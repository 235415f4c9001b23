# The Debian package (CPack's DEB generator), from an already-configured build tree:
#   cmake --build build --target package     # builds, then build/edgelink_<version>_<arch>.deb
#   (cd build && cpack -G DEB)               # the same from a tree that is already built
# Contents: everything the install() rules install, with the prefix /usr (/usr/bin/edgelink,
# /lib/systemd/system/edgelink.service, /etc/edgelink/edgelink.toml as a conffile,
# /usr/share/doc/edgelink), plus the maintainer scripts in packaging/debian. The version
# is project(VERSION), the one `edgelink version` prints.

set(EDGELINK_DEB_DIR ${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME edgelink)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "edgelink maintainers <maintainers@users.noreply.h-seed-b9893145.example>")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "edge agent daemon: local apps and MCUs to an MQTT broker")
set(CPACK_PACKAGE_DESCRIPTION "edgelink runs on Linux gateways. Local apps send data points over TCP as
JSON lines; edgelink batches each stream and publishes the batches to an MQTT
broker at QoS 1, spooling them on disk while the broker is unreachable. Actions
from the cloud are routed by name to the app that handles them. It also links
Raft microcontrollers over serial ports and Bluetooth LE, and serves a local
HTTP API.
It speaks bytebeam uplink's app protocol. One process, one TOML file
(/etc/edgelink/edgelink.toml), a systemd service.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)                 # edgelink_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)                  # Depends from dpkg-shlibdeps
set(CPACK_STRIP_FILES ON)                               # the build tree keeps the debug info
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${EDGELINK_DEB_DIR}/conffiles ${EDGELINK_DEB_DIR}/postinst
  ${EDGELINK_DEB_DIR}/prerm ${EDGELINK_DEB_DIR}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)  # scripts 0755, conffiles 0644
# `package_source`: a tarball of the source tree, without git and the build trees.
set(CPACK_SOURCE_GENERATOR TGZ)
set(CPACK_SOURCE_IGNORE_FILES "/\\.git/" "/build[^/]*/" "__pycache__/" "\\.pyc$")

# Debian policy's copyright file and a changelog (lintian: no-changelog is an error) in
# /usr/share/doc/edgelink, for every install. The changelog takes the version from
# project() and is compressed as lintian wants it (gzip -9, no timestamp in the header).
string(TIMESTAMP EDGELINK_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)  # honours SOURCE_DATE_EPOCH
configure_file(${EDGELINK_DEB_DIR}/changelog.in ${CMAKE_CURRENT_BINARY_DIR}/packaging/changelog @ONLY)
execute_process(COMMAND gzip -9nc ${CMAKE_CURRENT_BINARY_DIR}/packaging/changelog
  OUTPUT_FILE ${CMAKE_CURRENT_BINARY_DIR}/packaging/changelog.gz COMMAND_ERROR_IS_FATAL ANY)
install(FILES ${EDGELINK_DEB_DIR}/copyright ${CMAKE_CURRENT_BINARY_DIR}/packaging/changelog.gz
  DESTINATION share/doc/edgelink)

include(CPack)
