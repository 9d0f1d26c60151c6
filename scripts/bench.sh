#!/usr/bin/env bash
# Runs every module's Go benchmarks and prints each custom metric a benchmark
# reports (b.ReportMetric) on a line of its own:
#   BENCH <module>_<benchmark>_<unit with / as _per_> <value> <unit>
# e.g. BenchmarkDecode in schemas reporting samples/s gives
#   BENCH schemas_decode_samples_per_s 316479 samples/s
# A benchmark that reports a unit of the form NAME=UNIT (b.ReportMetric(x,
# "ingest_raw_copy_rows_per_s=rows/s")) names the figure itself: BENCH NAME x UNIT.
# The full `go test -bench` output goes to stderr for the record.
set -euo pipefail
benchtime=${BENCHTIME:-3s}
status=0
for dir in $(go list -m -f '{{.Dir}}'); do
  module=$(basename "$dir" | tr '-' '_')
  out=$(cd "$dir" && go test -run '^$' -bench . -benchtime "$benchtime" -count 1 ./... 2>&1) || status=1
  printf '%s\n' "$out" >&2
  printf '%s\n' "$out" | awk -v mod="$module" '
    /^Benchmark/ {
      name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
      gsub(/\//, "_", name)
      name = tolower(substr(name, 1, 1)) substr(name, 2)
      # CamelCase to snake_case
      snake = ""
      for (i = 1; i <= length(name); i++) {
        c = substr(name, i, 1)
        if (c ~ /[A-Z]/) { snake = snake "_" tolower(c) } else { snake = snake c }
      }
      for (i = 3; i + 1 <= NF; i += 2) {
        unit = $(i + 1)
        if (unit == "ns/op" || unit == "B/op" || unit == "allocs/op" || unit == "MB/s") continue
        if (index(unit, "=") > 0) {
          split(unit, parts, "=")
          printf "BENCH %s %s %s\n", parts[1], $i, parts[2]
          continue
        }
        u = unit; gsub(/\//, "_per_", u)
        printf "BENCH %s_%s_%s %s %s\n", mod, snake, u, $i, unit
      }
    }'
done
exit $status
