# FindPCRE2.cmake -- locate the 8-bit PCRE2 library (libpcre2-8).
#
# pkg-config (libpcre2-8) as a hint, find_path/find_library as a fallback.
#
# Result variables:
#   PCRE2_FOUND, PCRE2_VERSION, PCRE2_INCLUDE_DIRS, PCRE2_LIBRARIES
# Imported target:
#   PCRE2::pcre2-8   (carries PCRE2_CODE_UNIT_WIDTH=8, required by <pcre2.h>)

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_PCRE2 QUIET libpcre2-8)
endif()

find_path(PCRE2_INCLUDE_DIR
  NAMES pcre2.h
  HINTS ${PC_PCRE2_INCLUDEDIR} ${PC_PCRE2_INCLUDE_DIRS})
find_library(PCRE2_8_LIBRARY
  NAMES pcre2-8
  HINTS ${PC_PCRE2_LIBDIR} ${PC_PCRE2_LIBRARY_DIRS})

if(PC_PCRE2_VERSION)
  set(PCRE2_VERSION "${PC_PCRE2_VERSION}")
elseif(PCRE2_INCLUDE_DIR AND EXISTS "${PCRE2_INCLUDE_DIR}/pcre2.h")
  file(STRINGS "${PCRE2_INCLUDE_DIR}/pcre2.h" _pcre2_ver
    REGEX "^#define PCRE2_(MAJOR|MINOR)[ \t]+[0-9]+")
  string(REGEX REPLACE ".*PCRE2_MAJOR[ \t]+([0-9]+).*" "\\1" _pcre2_major "${_pcre2_ver}")
  string(REGEX REPLACE ".*PCRE2_MINOR[ \t]+([0-9]+).*" "\\1" _pcre2_minor "${_pcre2_ver}")
  set(PCRE2_VERSION "${_pcre2_major}.${_pcre2_minor}")
  unset(_pcre2_ver)
  unset(_pcre2_major)
  unset(_pcre2_minor)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(PCRE2
  REQUIRED_VARS PCRE2_8_LIBRARY PCRE2_INCLUDE_DIR
  VERSION_VAR PCRE2_VERSION)

if(PCRE2_FOUND)
  set(PCRE2_INCLUDE_DIRS "${PCRE2_INCLUDE_DIR}")
  set(PCRE2_LIBRARIES "${PCRE2_8_LIBRARY}")
  if(NOT TARGET PCRE2::pcre2-8)
    add_library(PCRE2::pcre2-8 UNKNOWN IMPORTED)
    set_target_properties(PCRE2::pcre2-8 PROPERTIES
      IMPORTED_LOCATION "${PCRE2_8_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${PCRE2_INCLUDE_DIR}"
      INTERFACE_COMPILE_DEFINITIONS "PCRE2_CODE_UNIT_WIDTH=8")
  endif()
endif()

mark_as_advanced(PCRE2_INCLUDE_DIR PCRE2_8_LIBRARY)
