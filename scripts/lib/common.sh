# Shared helpers for scripts/test, scripts/bench and scripts/gpu-check (sourced, not executed).
# They make a fresh clone build the same way everywhere: nvcc found, GoogleTest found or built from
# sources, one configure per build directory.

SMLA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

smla_log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# A build directory as an absolute path: as given when absolute, else under the repository root (where
# the scripts run), so that --build-dir /abs/dir and --build-dir rel/dir both name the library.
smla_abs_dir() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$SMLA_ROOT/$1" ;;
  esac
}

# A copy of the working tree at $1 (replaced if there), without build folders, .ab, .peers and .git: for a
# device script that builds a changed tree beside the real one (scripts/micro/*_call).
smla_copy_tree() {
  rm -rf "$1" && mkdir -p "$1" &&
    (cd "$SMLA_ROOT" && tar cf - --exclude='./build*' --exclude='./.ab' --exclude='./.peers' --exclude='./.git' .) |
    (cd "$1" && tar xf -)
}

# nvcc lives in /usr/local/cuda/bin on the machines we build on; it is often not on PATH.
smla_setup_path() {
  if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
  if ! command -v nvcc >/dev/null 2>&1; then
    smla_log "nvcc not found (looked on PATH and in /usr/local/cuda/bin)"
    return 1
  fi
}

smla_num_cores() { nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2; }

# A GoogleTest source tree to build from when find_package(GTest) fails: Debian's libgtest-dev
# sources, or the copy in the ignored .deps/ folder (carried to machines without libgtest-dev).
smla_gtest_source_dir() {
  local dir
  for dir in /usr/src/googletest "$SMLA_ROOT/.deps/googletest"; do
    if [ -f "$dir/CMakeLists.txt" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

# smla_configure BUILD_DIR [cmake args...]
# Configures once per build directory (Ninja when available for a new one). If GoogleTest is not
# installed, retries with -DSMLA_GTEST_SOURCE_DIR. Output goes to BUILD_DIR/configure.log as well.
smla_configure() {
  local build_dir="$1"
  shift
  local generator=()
  if [ ! -f "$build_dir/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
    generator=(-G Ninja)
  fi
  mkdir -p "$build_dir"
  local log="$build_dir/configure.log"
  if cmake -S "$SMLA_ROOT" -B "$build_dir" "${generator[@]}" "$@" >"$log" 2>&1; then
    tail -n 3 "$log"
    return 0
  fi
  if grep -q -i 'gtest' "$log"; then
    local gtest_dir
    if gtest_dir="$(smla_gtest_source_dir)"; then
      smla_log "find_package(GTest) failed; building GoogleTest from $gtest_dir"
      if cmake -S "$SMLA_ROOT" -B "$build_dir" "${generator[@]}" "$@" \
        -DSMLA_GTEST_SOURCE_DIR="$gtest_dir" >"$log" 2>&1; then
        tail -n 3 "$log"
        return 0
      fi
    fi
  fi
  cat "$log" >&2
  smla_log "configure of $build_dir failed (log: $log)"
  return 1
}

# smla_build BUILD_DIR [targets...]: builds with every core, continuing past failures so that one
# broken file does not hide the state of the others; returns non-zero when anything failed.
smla_build() {
  local build_dir="$1"
  shift
  local target_args=()
  local target
  for target in "$@"; do target_args+=(--target "$target"); done
  local keep_going=()
  if [ -f "$build_dir/build.ninja" ]; then keep_going=(-- -k 0); else keep_going=(-- -k); fi
  cmake --build "$build_dir" -j "$(smla_num_cores)" "${target_args[@]}" "${keep_going[@]}"
}

# Prints a python3 that has numpy and pytest: /usr/bin/python3 first (Debian packages), then the
# first python3 on PATH.
smla_pick_python() {
  local candidate
  for candidate in /usr/bin/python3 "$(command -v python3 || true)"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    if "$candidate" -c 'import numpy, pytest' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# True when tests/python holds at least one pytest file.
smla_has_python_tests() {
  compgen -G "$SMLA_ROOT/tests/python/test_*.py" >/dev/null || compgen -G "$SMLA_ROOT/tests/python/*_test.py" >/dev/null
}

# True when this machine has a usable NVIDIA GPU.
smla_has_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '
}

# Prints the path of Nsight Compute's ncu (on PATH, else the CUDA toolkit's); returns 1 when there is none.
smla_find_ncu() {
  command -v ncu 2>/dev/null && return 0
  [ -x /usr/local/cuda/bin/ncu ] && echo /usr/local/cuda/bin/ncu
}

# smla_ctest_counts LOG: prints "passed failed skipped total" parsed from a ctest log.
smla_ctest_counts() {
  local log="$1"
  local total failed skipped
  total="$(sed -n 's/.* tests passed, [0-9]* tests\{0,1\} failed out of \([0-9]*\).*/\1/p' "$log" | tail -n1)"
  failed="$(sed -n 's/.* tests passed, \([0-9]*\) tests\{0,1\} failed out of.*/\1/p' "$log" | tail -n1)"
  skipped="$(grep -c '\*\*\*Skipped' "$log" || true)"
  total="${total:-0}"
  failed="${failed:-0}"
  echo "$((total - failed - skipped)) $failed $skipped $total"
}
