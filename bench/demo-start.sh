#!/usr/bin/env bash
# How long `meshctl demo` takes to start: from launch to the first line after every proxy
# has joined and every flow has an answer ("Try, in another terminal"), over interleaved
# runs of each build. Each build is a directory holding meshctl, signet-cp and signet-proxy.
#
#   bench/demo-start.sh [--runs 10] before=/path/to/target/debug after=target/debug
set -euo pipefail
runs=10 builds=()
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2;;
    -h|--help) sed -n '2,6p' "$0"; exit 0;;
    *=*) builds+=("$1"); shift;;
    *) echo "unknown argument: $1" >&2; exit 2;;
  esac
done
[ ${#builds[@]} -gt 0 ] || { echo "give at least one NAME=DIR" >&2; exit 2; }
declare -A times
for ((r = 1; r <= runs; r++)); do
  for b in "${builds[@]}"; do
    name=${b%%=*} dir=${b#*=}
    start=$(date +%s%N)
    took=""
    while IFS= read -r line; do
      if [[ -z $took && $line == Try* ]]; then
        took=$(( ($(date +%s%N) - start) / 1000000 ))
      fi
    done < <("$dir/meshctl" demo --duration 1s 2>&1)
    [ -n "$took" ] || { echo "$name: the demo did not start" >&2; exit 1; }
    times[$name]+="$took "
  done
done
for b in "${builds[@]}"; do
  name=${b%%=*}
  sorted=$(tr ' ' '\n' <<< "${times[$name]}" | grep . | sort -n)
  n=$(wc -l <<< "$sorted")
  median=$(sed -n "$(( (n + 1) / 2 ))p" <<< "$sorted")
  printf '%-10s median %5s ms  min %5s ms  max %5s ms  (%s runs)\n' "$name" "$median" \
    "$(head -1 <<< "$sorted")" "$(tail -1 <<< "$sorted")" "$n"
done
