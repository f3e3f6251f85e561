#!/usr/bin/env bash
# Fails when a shell script of the repository that runs under `set -o pipefail` pipes into a reader
# that may quit before its writer is done: `| grep -q`, `| grep -m N`, `| grep -l`, `| head`,
# `| sed …q`, or `| awk` with `exit`. The writer then dies of SIGPIPE (exit 141) at random, and
# pipefail turns that into a failure. Capture the output first (`v=$(cmd)`, then `grep -q … <<<"$v"`),
# or use a reader that reads to the end (`sed -n 1p`, `awk 'NR == 1'`, `find -print -quit`).
#
# Usage: tests/scripts/pipefail_readers_test.sh [REPO_DIR]. Last line: "N passed, N failed".
set -euo pipefail
top=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$top"

early='\|[[:space:]]*(grep[[:space:]]+(-[[:alnum:]]*[qlm]|--quiet|--max-count|--files-with)|head([[:space:]]|$)|sed[^|]*[0-9/;{ ]q([[:space:]}'"'"'";]|$)|awk[^|]*[^[:alnum:]_]exit([^[:alnum:]_]|$))'
passed=0 failed=0
while IFS= read -r f; do
  [ -f "$f" ] || continue
  first=""; IFS= read -r -n 2 first <"$f" || true
  [ "$first" = '#!' ] || case "$f" in *.sh) ;; *) continue ;; esac
  grep -q 'pipefail' "$f" || continue
  hits=$(grep -nE "$early" "$f" | grep -vE '^[0-9]+:[[:space:]]*#' || true)
  if [ -n "$hits" ]; then
    echo "FAIL: $f pipes into a reader that quits early under pipefail:"
    sed 's/^/  /' <<<"$hits"
    failed=$((failed + 1))
  else
    passed=$((passed + 1))
  fi
done < <(git ls-files 2>/dev/null || find . -name '*.sh' -not -path './build/*')
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
