# ctest `install`: runs `cmake --install BUILD_DIR --prefix SCRATCH` and checks that the binary and
# every document in DOCS land where the install rules say, and that the installed binary runs and
# reports VERSION. Invoked as: cmake -DBUILD_DIR=... -DDOCS=a;b -DVERSION=x.y.z -P install.cmake
foreach(var BUILD_DIR DOCS VERSION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install.cmake: ${var} is not set")
  endif()
endforeach()

set(prefix "${BUILD_DIR}/install-check")
file(REMOVE_RECURSE "${prefix}")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}):\n${out}")
endif()

set(bin "${prefix}/bin/agentgate")
if(NOT EXISTS "${bin}")
  message(FATAL_ERROR "not installed: ${bin}")
endif()
foreach(doc ${DOCS})
  set(f "${prefix}/share/doc/agentgate/${doc}")
  if(NOT EXISTS "${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
  file(SIZE "${f}" size)
  if(size EQUAL 0)
    message(FATAL_ERROR "installed empty: ${f}")
  endif()
endforeach()

execute_process(COMMAND "${bin}" --version RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err TIMEOUT 10)
if(NOT rc EQUAL 0 OR NOT out STREQUAL "agentgate ${VERSION}\n")
  message(FATAL_ERROR "installed binary: exit ${rc}, stdout '${out}', stderr '${err}'")
endif()
file(REMOVE_RECURSE "${prefix}")
message(STATUS "installed and ran agentgate ${VERSION}")
