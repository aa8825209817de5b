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
