# ctest bench_metadata (cmake -P): smla-bench on the cpu backend must say what it measured. Runs a tiny
# JSON and a tiny CSV bench, with flags written both as --flag=value and --flag value, and checks the
# metadata (smla version, git commit, date, device, compute capability, driver and CUDA versions, copy
# bandwidth, host CPU, planner variables, command line), the [k/N] progress on stderr, and that a value given to a flag
# without one is refused. Needs -DBENCH=<smla-bench> -DWORK_DIR=<scratch dir> -DEXPECTED_VERSION=x.y.z.
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(fail message)
  message(FATAL_ERROR "bench_metadata: ${message}")
endfunction()

set(tiny --iters=1 --warmup 0 --pool-gb=0.01 --copy-gb 0.01)
execute_process(COMMAND ${BENCH} --backend=cpu --shape flash-swa --batch=1,2 ${tiny} --format=json
                        --output=${WORK_DIR}/bench.json
                RESULT_VARIABLE result OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT result EQUAL 0)
  fail("smla-bench --format=json exited with ${result}: ${stderr}")
endif()
if(NOT stdout STREQUAL "")
  fail("with --output the table must not go to stdout, got: ${stdout}")
endif()
foreach(step "[1/2] flash-swa cpu b=1" "[2/2] flash-swa cpu b=2")
  string(FIND "${stderr}" "${step}" at)
  if(at EQUAL -1)
    fail("stderr lacks the progress line '${step}': ${stderr}")
  endif()
endforeach()

file(READ ${WORK_DIR}/bench.json json)
string(JSON rows ERROR_VARIABLE error LENGTH "${json}" rows)
if(error OR NOT rows EQUAL 2)
  fail("expected {\"rows\": [2 rows]}, got ${rows} (${error}): ${json}")
endif()
# field -> regular expression its value must match (the cpu backend ran; no CUDA device was timed).
set(expected_fields
    smla_version "^${EXPECTED_VERSION}$"
    git_commit "^([0-9a-f]+(-dirty-tree-[0-9a-f]+)?|unknown)$"
    date_utc "^20[0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]Z$"
    device "^none$"
    compute_capability "^none$"
    nvidia_driver "^(none|[0-9][0-9.]*)$"
    driver_cuda_version "^(none|[0-9]+\\.[0-9]+)$"
    cuda_runtime_version "^[0-9]+\\.[0-9]+$"
    host_cpu "."
    host_copy_GB_per_s "^[0-9]+(\\.[0-9]+)?$"
    planner_overrides "^(none|SMLA_[A-Z_]+=[^ ]+( SMLA_[A-Z_]+=[^ ]+)?)$"
    command_line "--format=json")
list(LENGTH expected_fields count)
math(EXPR last "${count} - 1")
foreach(i RANGE 0 ${last} 2)
  math(EXPR j "${i} + 1")
  list(GET expected_fields ${i} field)
  list(GET expected_fields ${j} pattern)
  string(JSON value ERROR_VARIABLE error GET "${json}" metadata ${field})
  if(error)
    fail("metadata.${field} is missing: ${error}")
  endif()
  if(NOT value MATCHES "${pattern}")
    fail("metadata.${field} = '${value}' does not match ${pattern}")
  endif()
  set(json_${field} "${value}")
endforeach()
string(JSON type TYPE "${json}" metadata device_copy_GB_per_s)
if(NOT type STREQUAL "NULL")
  fail("metadata.device_copy_GB_per_s must be null when no CUDA device was timed, is ${type}")
endif()
if(json_host_copy_GB_per_s LESS_EQUAL 0)
  fail("metadata.host_copy_GB_per_s must be positive")
endif()

# CSV: the same metadata as columns of every row; a planner variable in the environment is named there.
execute_process(COMMAND ${CMAKE_COMMAND} -E env SMLA_SM_COUNT=188
                        ${BENCH} --backend cpu --shape=flash-swa --batch 1 ${tiny} --format csv
                RESULT_VARIABLE result OUTPUT_VARIABLE csv ERROR_VARIABLE stderr)
if(NOT result EQUAL 0)
  fail("smla-bench --format csv exited with ${result}: ${stderr}")
endif()
string(REGEX MATCHALL "[^\n]+" lines "${csv}")
list(LENGTH lines line_count)
if(NOT line_count EQUAL 2)
  fail("expected a header and one row, got: ${csv}")
endif()
list(GET lines 0 header)
list(GET lines 1 row)
foreach(field smla_version git_commit date_utc device compute_capability nvidia_driver driver_cuda_version
              cuda_runtime_version device_copy_GB_per_s host_cpu host_copy_GB_per_s planner_overrides command_line)
  if(NOT header MATCHES "(^|,)${field}(,|$)")
    fail("CSV header lacks ${field}: ${header}")
  endif()
endforeach()
if(NOT row MATCHES ",${EXPECTED_VERSION},${json_git_commit},")
  fail("CSV row lacks the version and commit: ${row}")
endif()
if(NOT row MATCHES ",(SMLA_MAX_SHARED_BYTES=[0-9]+ )?SMLA_SM_COUNT=188,")
  fail("CSV row lacks planner_overrides SMLA_SM_COUNT=188: ${row}")
endif()

# A flag without a value refuses one given with '='.
execute_process(COMMAND ${BENCH} --check=yes RESULT_VARIABLE result OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT result EQUAL 2 OR NOT stderr MATCHES "--check takes no value")
  fail("--check=yes must fail with exit 2 and a message, got ${result}: ${stderr}")
endif()
message(STATUS "bench_metadata: smla ${json_smla_version} (${json_git_commit}), ${json_date_utc}, ok")
