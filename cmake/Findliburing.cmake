# Findliburing.cmake -- locate liburing (https://github.com/axboe/liburing).
#
# Debian's liburing-dev ships only liburing.pc (no CMake package), so this
# module uses pkg-config as a hint and falls back to find_path/find_library.
#
# Result variables:
#   liburing_FOUND, liburing_VERSION, liburing_INCLUDE_DIRS, liburing_LIBRARIES
# Imported target:
#   liburing::liburing
# Hints:
#   liburing_ROOT (CMake >= 3.12 standard), liburing_USE_STATIC_LIBS

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_liburing QUIET liburing)
endif()

find_path(liburing_INCLUDE_DIR
  NAMES liburing.h
  HINTS ${PC_liburing_INCLUDEDIR} ${PC_liburing_INCLUDE_DIRS})

set(_liburing_names uring)
if(liburing_USE_STATIC_LIBS)
  set(_liburing_names liburing.a uring)
endif()
find_library(liburing_LIBRARY
  NAMES ${_liburing_names}
  HINTS ${PC_liburing_LIBDIR} ${PC_liburing_LIBRARY_DIRS})
unset(_liburing_names)

# Version: liburing.pc when available; otherwise io_uring_version.h
# (only shipped since liburing 2.4, absent from Debian 12's 2.3).
if(PC_liburing_VERSION)
  set(liburing_VERSION "${PC_liburing_VERSION}")
endif()
if(NOT liburing_VERSION AND liburing_INCLUDE_DIR
   AND EXISTS "${liburing_INCLUDE_DIR}/liburing/io_uring_version.h")
  file(STRINGS "${liburing_INCLUDE_DIR}/liburing/io_uring_version.h" _liburing_ver
    REGEX "^#define IO_URING_VERSION_(MAJOR|MINOR)[ \t]+[0-9]+")
  string(REGEX REPLACE ".*MAJOR[ \t]+([0-9]+).*" "\\1" _liburing_major "${_liburing_ver}")
  string(REGEX REPLACE ".*MINOR[ \t]+([0-9]+).*" "\\1" _liburing_minor "${_liburing_ver}")
  set(liburing_VERSION "${_liburing_major}.${_liburing_minor}")
  unset(_liburing_ver)
  unset(_liburing_major)
  unset(_liburing_minor)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(liburing
  REQUIRED_VARS liburing_LIBRARY liburing_INCLUDE_DIR
  VERSION_VAR liburing_VERSION)

if(liburing_FOUND)
  set(liburing_INCLUDE_DIRS "${liburing_INCLUDE_DIR}")
  set(liburing_LIBRARIES "${liburing_LIBRARY}")
  if(NOT TARGET liburing::liburing)
    add_library(liburing::liburing UNKNOWN IMPORTED)
    set_target_properties(liburing::liburing PROPERTIES
      IMPORTED_LOCATION "${liburing_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${liburing_INCLUDE_DIR}")
  endif()
endif()

mark_as_advanced(liburing_INCLUDE_DIR liburing_LIBRARY)
