# Helpers shared by every folder's CMakeLists.txt.

# tally_test(NAME name SOURCES ... DEPS ...): a GoogleTest binary in build/bin,
# registered with CTest one test case at a time.
function(tally_test)
  cmake_parse_arguments(T "" "NAME" "SOURCES;DEPS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} GTest::gtest_main GTest::gmock)
  gtest_discover_tests(${T_NAME}
    DISCOVERY_MODE PRE_TEST
    PROPERTIES TIMEOUT 300)
endfunction()

# Collects every library `target` links, directly or through other targets.
function(_tally_collect_links target out)
  set(seen ${${out}})
  foreach(prop LINK_LIBRARIES INTERFACE_LINK_LIBRARIES)
    get_target_property(libs ${target} ${prop})
    if(NOT libs)
      continue()
    endif()
    foreach(lib ${libs})
      if(lib IN_LIST seen)
        continue()
      endif()
      list(APPEND seen ${lib})
      if(TARGET ${lib})
        _tally_collect_links(${lib} seen)
      endif()
    endforeach()
  endforeach()
  set(${out} ${seen} PARENT_SCOPE)
endfunction()

# tally_assert_links_none(target pattern...): fails the configure step if
# `target` links, even indirectly, a library whose name contains a pattern.
function(tally_assert_links_none target)
  set(links "")
  _tally_collect_links(${target} links)
  foreach(pattern ${ARGN})
    foreach(lib ${links})
      string(TOLOWER "${lib}" lower)
      if(lower MATCHES "${pattern}")
        message(FATAL_ERROR
          "${target} must not link ${pattern}, but links ${lib}")
      endif()
    endforeach()
  endforeach()
endfunction()

# libfaketime, for tests that run with the wall clock off and monotonic time
# true. scripts/install-deps.sh installs it (Debian package faketime).
find_file(TALLY_FAKETIME_LIB libfaketimeMT.so.1
  PATHS /usr/lib/x86_64-linux-gnu/faketime /usr/lib/aarch64-linux-gnu/faketime
        /usr/lib/faketime
  NO_DEFAULT_PATH)

# Runs the gtests of TARGET that FILTER selects under libfaketime, the wall
# clock at the offset FAKETIME (e.g. +900s) or, without it, at the offset the
# test writes to the file named by FAKETIME_TIMESTAMP_FILE.
function(tally_wall_clock_test)
  cmake_parse_arguments(T "" "NAME;TARGET;FILTER;FAKETIME" "" ${ARGN})
  if(NOT TALLY_FAKETIME_LIB)
    message(WARNING "libfaketime not found (apt-get install faketime): "
      "${T_NAME} is left out")
    return()
  endif()
  set(env "LD_PRELOAD=${TALLY_FAKETIME_LIB}" "FAKETIME_DONT_FAKE_MONOTONIC=1")
  if(T_FAKETIME)
    list(APPEND env "FAKETIME=${T_FAKETIME}")
  else()
    set(file ${CMAKE_CURRENT_BINARY_DIR}/${T_NAME}.faketime)
    file(WRITE ${file} "+0\n")
    list(APPEND env "FAKETIME_TIMESTAMP_FILE=${file}" "FAKETIME_CACHE_DURATION=1")
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_TARGET} --gtest_filter=${T_FILTER})
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT 120 ENVIRONMENT "${env}")
endfunction()
