# Install-time part of `cmake --install`: the systemd files, the documented conf, and the default
# /etc conf. Runs at install time so that `cmake --install --prefix P` (and DESTDIR) are honoured:
# the unit's ExecStart= names the installed binary. Expects CDCSYNC_SRC, CDCSYNC_BIN (build dir),
# and the relative dirs CDCSYNC_BINDIR, CDCSYNC_DOCDIR, CDCSYNC_UNITDIR, CDCSYNC_SYSUSERSDIR,
# CDCSYNC_TMPFILESDIR (set by install(CODE) just before this script).

# prefix-relative → absolute.
function(cdcsync_abs out rel)
  if(IS_ABSOLUTE "${rel}")
    set(${out} "${rel}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${rel}" PARENT_SCOPE)
  endif()
endfunction()

cdcsync_abs(bindir "${CDCSYNC_BINDIR}")
cdcsync_abs(docdir "${CDCSYNC_DOCDIR}")
cdcsync_abs(unitdir "${CDCSYNC_UNITDIR}")
cdcsync_abs(sysusersdir "${CDCSYNC_SYSUSERSDIR}")
cdcsync_abs(tmpfilesdir "${CDCSYNC_TMPFILESDIR}")
# The unit reads /etc/cdcsync/cdcsync.conf (ConfigurationDirectory= is always under /etc): system
# prefixes install the conf there; any other prefix (a staging tree) gets PREFIX/etc/cdcsync.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr" OR CMAKE_INSTALL_PREFIX STREQUAL "/usr/local")
  set(confdir "/etc/cdcsync")
else()
  set(confdir "${CMAKE_INSTALL_PREFIX}/etc/cdcsync")
endif()

# The unit, pointed at the installed binary and documentation.
file(READ "${CDCSYNC_SRC}/systemd/cdcsync.service" unit)
string(REPLACE "/usr/bin/cdcsync" "${bindir}/cdcsync" unit "${unit}")
string(REPLACE "/usr/share/doc/cdcsync" "${docdir}" unit "${unit}")
set(gen "${CDCSYNC_BIN}/install-gen")
file(MAKE_DIRECTORY "${gen}")
file(WRITE "${gen}/cdcsync.service" "${unit}")
file(INSTALL DESTINATION "${unitdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${gen}/cdcsync.service")

# sysusers.d and tmpfiles.d take <package>.conf names.
configure_file("${CDCSYNC_SRC}/systemd/cdcsync.sysusers" "${gen}/sysusers/cdcsync.conf" COPYONLY)
configure_file("${CDCSYNC_SRC}/systemd/cdcsync.tmpfiles" "${gen}/tmpfiles/cdcsync.conf" COPYONLY)
file(INSTALL DESTINATION "${sysusersdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${gen}/sysusers/cdcsync.conf")
file(INSTALL DESTINATION "${tmpfilesdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${gen}/tmpfiles/cdcsync.conf")

# Documentation: the reference conf (every key), the example confs, the README when there is one.
configure_file("${CDCSYNC_SRC}/conf/cdcsync.conf" "${gen}/doc/cdcsync.conf.example" COPYONLY)
file(INSTALL DESTINATION "${docdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${gen}/doc/cdcsync.conf.example")
file(GLOB examples "${CDCSYNC_SRC}/conf/examples/*.conf")
file(INSTALL DESTINATION "${docdir}/examples" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES ${examples})
if(EXISTS "${CDCSYNC_SRC}/README.md")
  file(INSTALL DESTINATION "${docdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES "${CDCSYNC_SRC}/README.md")
endif()

# /etc/cdcsync/cdcsync.conf: only when absent, so an upgrade never overwrites the operator's conf.
# Mode 0640: it may come to hold secrets; the cdcsync group gets read access from tmpfiles.d.
if(EXISTS "$ENV{DESTDIR}${confdir}/cdcsync.conf")
  message(STATUS "Keeping: $ENV{DESTDIR}${confdir}/cdcsync.conf (exists; the reference is ${docdir}/cdcsync.conf.example)")
else()
  configure_file("${CDCSYNC_SRC}/conf/cdcsync.conf" "${gen}/etc/cdcsync.conf" COPYONLY)
  file(INSTALL DESTINATION "${confdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ
       FILES "${gen}/etc/cdcsync.conf")
endif()
