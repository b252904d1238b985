# Writes buildinfo.h with the git revision; rewrites only when the content changes, so an
# unchanged tree does not trigger a rebuild.
execute_process(COMMAND git -C "${SRC}" rev-parse --short=12 HEAD
  OUTPUT_VARIABLE GIT_REV OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR GIT_REV STREQUAL "")
  set(GIT_REV "unknown")
else()
  execute_process(COMMAND git -C "${SRC}" status --porcelain --untracked-files=no
    OUTPUT_VARIABLE DIRTY OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT DIRTY STREQUAL "")
    set(GIT_REV "${GIT_REV}-dirty")
  endif()
endif()
set(content "#pragma once\n#define QBENCH_VERSION \"${VERSION}\"\n#define QBENCH_GIT_REV \"${GIT_REV}\"\n")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
else()
  set(old "")
endif()
if(NOT old STREQUAL content)
  file(WRITE "${OUT}" "${content}")
endif()
