# cmake -DROOT=<corl source> -P check_test_names.cmake
# Fails when a doctest TEST_CASE / SUBCASE name contains ';'. ctest splits the names that doctest_discover_tests
# registers at ';', so each half matches no test case and "passes" without running anything.
file(GLOB_RECURSE _sources ${ROOT}/tests/*.cpp ${ROOT}/tests/*.cu ${ROOT}/examples/*.cpp)
set(_bad "")
foreach(src IN LISTS _sources)
  file(STRINGS ${src} _lines REGEX "TEST_CASE(_TEMPLATE)?\\(\"[^\"]*\\;")
  foreach(line IN LISTS _lines)
    string(APPEND _bad "  ${src}: ${line}\n")
  endforeach()
endforeach()
if(_bad)
  message(FATAL_ERROR "doctest test names must not contain ';' (ctest would split them and run nothing):\n${_bad}")
endif()
message(STATUS "no test name contains ';'")
