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
message(STATUS "README code blocks match docs/examples")
