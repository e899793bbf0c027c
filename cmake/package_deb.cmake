# `cpack -G DEB` in a build directory: a Debian package of what `cmake --install` installs, with
# prefix /usr (the conf as /etc/cdcsync/cdcsync.conf, a conffile), dependencies from
# dpkg-shlibdeps plus systemd (sysusers and tmpfiles in the maintainer scripts), and the
# maintainer scripts of packaging/debian/. README: "Debian package".
set(CPACK_PACKAGE_NAME cdcsync)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "change-data-capture sync between PostgreSQL, MariaDB/MySQL and Kafka")
set(CDCSYNC_PACKAGE_MAINTAINER "cdcsync packagers <root@localhost>" CACHE STRING
    "Maintainer field of the Debian package")
set(CDCSYNC_PACKAGE_RELEASE 1 CACHE STRING "Debian revision of the package")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CDCSYNC_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_RELEASE ${CDCSYNC_PACKAGE_RELEASE})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # cdcsync_VERSION-RELEASE_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The summary line is CPACK_PACKAGE_DESCRIPTION_SUMMARY; CPack indents these lines and turns the
# empty one into " .".
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "cdcsync tails a database's replication log (PostgreSQL pgoutput, the MariaDB
binlog) or Kafka topics and applies the changes to PostgreSQL, MariaDB/MySQL or
Kafka: whole source transactions in commit order, nothing lost, nothing applied
twice in effect, bidirectional sync with version vectors.

The service is installed disabled: define a pipeline in
/etc/cdcsync/cdcsync.conf, run cdcsync check, then systemctl enable --now
cdcsync.")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_SOURCE_DIR}/packaging/debian/conffiles;${CMAKE_SOURCE_DIR}/packaging/debian/postinst;${CMAKE_SOURCE_DIR}/packaging/debian/prerm;${CMAKE_SOURCE_DIR}/packaging/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
# Install as `cmake --install --prefix /usr` into a staging DESTDIR, so that install_ops.cmake
# sees the real prefix (ExecStart=/usr/bin/cdcsync, the conf in /etc/cdcsync), whatever prefix
# the build directory was configured with.
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
include(CPack)
