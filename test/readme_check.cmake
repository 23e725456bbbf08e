# Fails unless each guide below contains its example from docs/examples verbatim, so that the
# code blocks people read are exactly the examples CI compiles and runs.
function(require_verbatim doc example)
  file(READ "${SOURCE_DIR}/${doc}" text)
  file(READ "${SOURCE_DIR}/docs/examples/${example}" code)
  string(FIND "${text}" "${code}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${doc} does not contain docs/examples/${example} verbatim")
  endif()
endfunction()

require_verbatim(README.md line_echo.cpp)
require_verbatim(README.md line_client.cpp)
require_verbatim(docs/tls.md tls_echo.cpp)
require_verbatim(docs/tornado-migration.md seed_client.cpp)
message(STATUS "guides contain their examples verbatim")
