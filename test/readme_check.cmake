# Fails unless every docs/examples file named in README.md appears in it verbatim, so that the
# README's code blocks are exactly the examples CI compiles and runs.
file(READ "${SOURCE_DIR}/README.md" readme)
foreach(example IN ITEMS line_echo.cpp line_client.cpp)
  file(READ "${SOURCE_DIR}/docs/examples/${example}" code)
  string(FIND "${readme}" "${code}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "README.md does not contain docs/examples/${example} verbatim")
  endif()
endforeach()
# docs/tls.md opens with docs/examples/tls_echo.cpp, verbatim.
file(READ "${SOURCE_DIR}/docs/tls.md" tls_guide)
file(READ "${SOURCE_DIR}/docs/examples/tls_echo.cpp" code)
string(FIND "${tls_guide}" "${code}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "docs/tls.md does not contain docs/examples/tls_echo.cpp verbatim")
endif()
message(STATUS "README code blocks match docs/examples")
