# consumer_test.cmake -- run by the ctest tests package.consumer and
# package.add_subdirectory (see test/CMakeLists.txt).
#
#   MODE=install          cmake --install the corio build tree into a staging
#                         prefix, build test/consumer with find_package(corio)
#                         via CMAKE_PREFIX_PATH, run it; then check corio.pc
#                         with pkg-config and build+run main.cpp from its flags.
#   MODE=add_subdirectory build test/consumer with add_subdirectory(corio).
#
# Inputs (-D): CORIO_SOURCE_DIR CORIO_BINARY_DIR CORIO_VERSION GENERATOR
#   BUILD_TYPE CONFIG CXX_COMPILER C_COMPILER CXX_FLAGS CXX_FLAGS_CONFIG C_FLAGS
#   C_FLAGS_CONFIG EXE_LINKER_FLAGS BUILD_SHARED_LIBS MODE
cmake_minimum_required(VERSION 3.25)

function(run_step what)
  message(STATUS "[consumer] ${what}: ${ARGN}")
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[consumer] ${what} failed (${rc}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

function(check_output what output)
  if(NOT output MATCHES "corio ${CORIO_VERSION}")
    message(FATAL_ERROR "[consumer] ${what}: expected 'corio ${CORIO_VERSION}' in output, got:\n${output}")
  endif()
  message(STATUS "[consumer] ${what} printed: ${output}")
endfunction()

set(config_args "")
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()

set(work "${CORIO_BINARY_DIR}/package_test/${MODE}")
set(prefix "${work}/prefix")
set(build "${work}/build")
file(REMOVE_RECURSE "${work}")
file(MAKE_DIRECTORY "${work}")

set(common_args
  -S "${CORIO_SOURCE_DIR}/test/consumer"
  -B "${build}"
  -G "${GENERATOR}"
  "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
  "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
  "-DCMAKE_C_COMPILER=${C_COMPILER}"
  "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
  "-DCMAKE_C_FLAGS=${C_FLAGS}"
  "-DCMAKE_EXE_LINKER_FLAGS=${EXE_LINKER_FLAGS}"
  "-DCORIO_EXPECTED_VERSION=${CORIO_VERSION}")
if(BUILD_TYPE)
  string(TOUPPER "${BUILD_TYPE}" config_upper)
  list(APPEND common_args
    "-DCMAKE_CXX_FLAGS_${config_upper}=${CXX_FLAGS_CONFIG}"
    "-DCMAKE_C_FLAGS_${config_upper}=${C_FLAGS_CONFIG}")
endif()
if(BUILD_SHARED_LIBS)
  list(APPEND common_args "-DBUILD_SHARED_LIBS=${BUILD_SHARED_LIBS}")
endif()

if(MODE STREQUAL "install")
  run_step("install" "${CMAKE_COMMAND}" --install "${CORIO_BINARY_DIR}" --prefix "${prefix}" ${config_args})

  # --- CMake package -------------------------------------------------------
  run_step("configure" "${CMAKE_COMMAND}" ${common_args}
    "-DCMAKE_PREFIX_PATH=${prefix}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  # Make sure we tested the staged install, not some other corio.
  file(STRINGS "${build}/CMakeCache.txt" corio_dir_line REGEX "^corio_DIR:")
  string(FIND "${corio_dir_line}" "${prefix}/" pos)
  if(NOT pos GREATER -1)
    message(FATAL_ERROR "[consumer] find_package(corio) did not use the staged prefix: ${corio_dir_line}")
  endif()
  run_step("build" "${CMAKE_COMMAND}" --build "${build}" ${config_args})
  run_step("run" "${build}/corio_consumer")
  check_output("find_package consumer" "${step_output}")

  # --- pkg-config ----------------------------------------------------------
  find_program(PKG_CONFIG_EXECUTABLE NAMES pkg-config pkgconf REQUIRED)
  file(GLOB_RECURSE pc_files "${prefix}/*/pkgconfig/corio.pc")
  list(LENGTH pc_files n_pc)
  if(NOT n_pc EQUAL 1)
    message(FATAL_ERROR "[consumer] expected exactly one installed corio.pc under ${prefix}, found: ${pc_files}")
  endif()
  get_filename_component(pc_dir "${pc_files}" DIRECTORY)
  get_filename_component(lib_dir "${pc_dir}" DIRECTORY)
  set(pc_env "${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${pc_dir}")
  run_step("pkg-config" ${pc_env} "${PKG_CONFIG_EXECUTABLE}" --cflags --libs corio)
  message(STATUS "[consumer] pkg-config --cflags --libs corio: ${step_output}")
  set(pc_static "")
  if(NOT BUILD_SHARED_LIBS)
    set(pc_static --static)
  endif()
  run_step("pkg-config" ${pc_env} "${PKG_CONFIG_EXECUTABLE}" ${pc_static} --cflags --libs corio)
  string(STRIP "${step_output}" pc_flags)
  separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
  separate_arguments(extra_flags UNIX_COMMAND "${CXX_FLAGS} ${CXX_FLAGS_CONFIG} ${EXE_LINKER_FLAGS}")
  run_step("pkg-config build" "${CXX_COMPILER}" -std=c++20 ${extra_flags}
    "${CORIO_SOURCE_DIR}/test/consumer/main.cpp"
    -o "${work}/corio_consumer_pc" ${pc_flags} "-Wl,-rpath,${lib_dir}")
  run_step("pkg-config run" "${work}/corio_consumer_pc")
  check_output("pkg-config consumer" "${step_output}")

elseif(MODE STREQUAL "add_subdirectory")
  run_step("configure" "${CMAKE_COMMAND}" ${common_args} "-DCORIO_SOURCE_DIR=${CORIO_SOURCE_DIR}")
  run_step("build" "${CMAKE_COMMAND}" --build "${build}" ${config_args})
  run_step("run" "${build}/corio_consumer")
  check_output("add_subdirectory consumer" "${step_output}")

else()
  message(FATAL_ERROR "[consumer] unknown MODE='${MODE}'")
endif()
