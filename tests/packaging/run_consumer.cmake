# Packaging test driver, run in script mode by ctest (see CMakeLists.txt here):
#   cmake -DCORL_SOURCE_DIR=<src> -DWORK_DIR=<scratch> -DMODE=find_package|add_subdirectory -DCUDA=ON|OFF
#         [-DGENERATOR=<gen>] [-DCXX_COMPILER=<path>] [-DCUDA_COMPILER=<path>] -P run_consumer.cmake
# find_package:     configure corl alone (tests, benchmarks, examples OFF), install it into WORK_DIR/prefix, then
#                   check that find_package(corl 1.0) is refused, configure + build consumer/ with
#                   find_package(corl 0.1 CONFIG REQUIRED) and run it.
# add_subdirectory: configure + build consumer/, which does add_subdirectory(<corl source>), and run it.
# Any failing step (configure, build, install, a missing installed file, the consumer's own checks) is a FATAL_ERROR,
# which makes `cmake -P` exit non-zero and the ctest test fail.
cmake_minimum_required(VERSION 3.25)

foreach(var IN ITEMS CORL_SOURCE_DIR WORK_DIR MODE)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT MODE MATCHES "^(find_package|add_subdirectory)$")
  message(FATAL_ERROR "run_consumer.cmake: MODE='${MODE}', expected find_package or add_subdirectory")
endif()
if(CUDA)
  set(CUDA ON)
else()
  set(CUDA OFF)
endif()

set(consumer_src "${CMAKE_CURRENT_LIST_DIR}/consumer")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# Options every configure step shares: same generator and compilers as the enclosing build when it told us.
set(common_args)
if(GENERATOR)
  list(APPEND common_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
  list(APPEND common_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(CUDA AND CUDA_COMPILER)
  list(APPEND common_args "-DCMAKE_CUDA_COMPILER=${CUDA_COMPILER}")
endif()

# Runs one step; on failure prints its output and stops the test.
function(run_step name)
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY "${WORK_DIR}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "run_consumer.cmake [${MODE}]: step '${name}' failed (exit ${rc})\n"
                        "command: ${ARGN}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
  endif()
  message(STATUS "[${MODE}] ${name}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

set(consumer_build "${WORK_DIR}/consumer-build")
if(MODE STREQUAL "find_package")
  set(corl_build "${WORK_DIR}/corl-build")
  set(prefix "${WORK_DIR}/prefix")
  run_step("configure corl" "${CMAKE_COMMAND}" -S "${CORL_SOURCE_DIR}" -B "${corl_build}" ${common_args}
    -DCMAKE_BUILD_TYPE=Release -DCORL_BUILD_TESTS=OFF -DCORL_BUILD_BENCHMARKS=OFF -DCORL_BUILD_EXAMPLES=OFF
    -DCORL_ENABLE_CUDA=${CUDA} "-DCMAKE_INSTALL_PREFIX=${prefix}")
  run_step("install corl" "${CMAKE_COMMAND}" --install "${corl_build}" --prefix "${prefix}")

  # The installed tree must hold the headers and the package files (lib dir may be lib or lib64).
  file(GLOB config_file "${prefix}/lib*/cmake/corl/corlConfig.cmake")
  file(GLOB version_file "${prefix}/lib*/cmake/corl/corlConfigVersion.cmake")
  file(GLOB targets_file "${prefix}/lib*/cmake/corl/corlTargets.cmake")
  foreach(what IN ITEMS config_file version_file targets_file)
    if(NOT ${what})
      message(FATAL_ERROR "run_consumer.cmake [find_package]: ${what} missing under ${prefix}/lib*/cmake/corl")
    endif()
  endforeach()
  foreach(header IN ITEMS corl/core/error.hpp corl/core/rng.hpp corl/loss/ppo_clip.hpp)
    if(NOT EXISTS "${prefix}/include/${header}")
      message(FATAL_ERROR "run_consumer.cmake [find_package]: installed header ${prefix}/include/${header} missing")
    endif()
  endforeach()
  if(CUDA AND NOT EXISTS "${prefix}/include/corl/cuda/check.cuh")
    message(FATAL_ERROR "run_consumer.cmake [find_package]: CUDA=ON but ${prefix}/include/corl/cuda/check.cuh "
                        "was not installed")
  endif()

  # The version file must reject an incompatible request (corl 0.1.x is not corl 1.0).
  execute_process(COMMAND "${CMAKE_COMMAND}" -S "${consumer_src}" -B "${WORK_DIR}/consumer-wrong-version"
      ${common_args} -DCORL_CONSUMER_MODE=find_package -DCORL_CONSUMER_VERSION=1.0 "-DCMAKE_PREFIX_PATH=${prefix}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT err MATCHES "corl")
    message(FATAL_ERROR "run_consumer.cmake [find_package]: find_package(corl 1.0 CONFIG REQUIRED) did not fail "
                        "against corl 0.1 (exit ${rc})\n${out}\n${err}")
  endif()
  message(STATUS "[find_package] find_package(corl 1.0) rejected: ok")

  run_step("configure consumer" "${CMAKE_COMMAND}" -S "${consumer_src}" -B "${consumer_build}" ${common_args}
    -DCORL_CONSUMER_MODE=find_package "-DCMAKE_PREFIX_PATH=${prefix}" -DCORL_EXPECT_CUDA=${CUDA})
  # The consumer must have found the scratch install, not some other corl on the machine.
  file(STRINGS "${consumer_build}/CMakeCache.txt" corl_dir_line REGEX "^corl_DIR:")
  string(FIND "${corl_dir_line}" "${prefix}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "run_consumer.cmake [find_package]: consumer found '${corl_dir_line}', not the package in ${prefix}")
  endif()
else()
  run_step("configure consumer" "${CMAKE_COMMAND}" -S "${consumer_src}" -B "${consumer_build}" ${common_args}
    -DCORL_CONSUMER_MODE=add_subdirectory "-DCORL_SOURCE_DIR=${CORL_SOURCE_DIR}" -DCORL_ENABLE_CUDA=${CUDA}
    -DCORL_EXPECT_CUDA=${CUDA})
endif()

run_step("build consumer" "${CMAKE_COMMAND}" --build "${consumer_build}" --target corl_consumer)
find_program(consumer_exe corl_consumer PATHS "${consumer_build}" "${consumer_build}/Debug" "${consumer_build}/Release"
  NO_DEFAULT_PATH NO_CACHE)
if(NOT consumer_exe)
  message(FATAL_ERROR "run_consumer.cmake [${MODE}]: built corl_consumer not found in ${consumer_build}")
endif()
run_step("run consumer" "${consumer_exe}")
if(NOT step_output MATCHES "all checks passed")
  message(FATAL_ERROR "run_consumer.cmake [${MODE}]: consumer exited 0 without reporting its checks:\n${step_output}")
endif()
message(STATUS "[${MODE}] corl consumer built and ran against corl from ${CORL_SOURCE_DIR}")
