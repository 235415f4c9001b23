#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test.
#   1. gcc build (RelWithDebInfo): unit tests and integration tests (real mosquitto) via ctest
#   2. clang build with AddressSanitizer + UndefinedBehaviorSanitizer: unit tests, the
#      libFuzzer targets over their corpora plus a bounded fuzzing run each, and, when
#      time allows (EDGELINK_TEST_BUDGET seconds, default 840), the integration tests again.
# Environment: FUZZ_SECONDS (default 10) per fuzz target; EDGELINK_SKIP_SANITIZE=1 skips step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
budget=${EDGELINK_TEST_BUDGET:-840}
jobs=${JOBS:-$(nproc)}

.ci/install-deps.sh

echo "== build (gcc)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGELINK_TESTS=ON -DEDGELINK_BENCH=ON >/dev/null
cmake --build build -j"$jobs"

echo "== unit and integration tests"
(cd build && ctest --output-on-failure -j"$jobs" --timeout 300) | tee build/ctest.log
passed=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' build/ctest.log)
total_passed=${passed:-0}

if [ "${EDGELINK_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== build (clang, ASan + UBSan, libFuzzer)"
  CC=clang-14 CXX=clang++-14 cmake -S . -B build-san -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DEDGELINK_SANITIZE=ON -DEDGELINK_FUZZ=ON -DEDGELINK_BENCH=OFF >/dev/null
  cmake --build build-san -j"$jobs"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$PWD/tests/sanitizers/ubsan.supp

  echo "== unit tests under sanitizers"
  build-san/edgelink_unit_tests
  total_passed=$((total_passed + 1))

  echo "== fuzz targets (${FUZZ_SECONDS:-10}s each, corpora in tests/fuzz/corpus)"
  for target in build-san/*_fuzz; do
    name=$(basename "$target" _fuzz)
    corpus=tests/fuzz/corpus/$name
    mkdir -p "$corpus"
    work=$(mktemp -d)
    "$target" -max_total_time="${FUZZ_SECONDS:-10}" -print_final_stats=1 "$work" "$corpus" 2>"$work.log" \
      || { tail -50 "$work.log"; echo "fuzz target $name failed"; exit 1; }
    echo "fuzz $name: $(grep -o "number_of_executed_units: [0-9]*" "$work.log" | grep -o "[0-9]*") runs ok"
    rm -rf "$work" "$work.log"
    total_passed=$((total_passed + 1))
  done

  if [ $((SECONDS - start)) -lt "$budget" ]; then
    echo "== integration tests under sanitizers"
    (cd build-san && ctest --output-on-failure -j"$jobs" --timeout 300 -R '^integration') | tee build-san/ctest.log
    passed=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' build-san/ctest.log)
    total_passed=$((total_passed + ${passed:-0}))
  else
    echo "== integration tests under sanitizers skipped: $((SECONDS - start))s used of a ${budget}s budget"
  fi
fi

echo "took $((SECONDS - start))s"
echo "$total_passed passed, 0 failed"
