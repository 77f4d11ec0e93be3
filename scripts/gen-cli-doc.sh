#!/usr/bin/env bash
# gen-cli-doc.sh — regenerates the command reference part of docs/CLI.md from
# the built binary's --help texts (everything after "## Examples" is kept).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cl="$here/build/culeace"
doc="$here/docs/CLI.md"
tail_part="$(sed -n '/^## Examples/,$p' "$doc")"
{
  echo "# culeace command line"
  echo
  echo "Generated from each command's \`--help\` by scripts/gen-cli-doc.sh; exit status 0 on success, 1 on an error (the message on stderr names the file, dataset, row or option), 2 on a usage error. Results go to stdout (a table, or one JSON object with \`--json\`); notes and the progress bar (on a terminal only) go to stderr."
  echo
  echo '```'; "$cl" --help; echo '```'
  for c in inspect fit apply check probe score; do
    echo; echo "## culeace $c"; echo; echo '```'; "$cl" "$c" --help; echo '```'
  done
  echo
  echo "$tail_part"
} > "$doc.tmp"
mv "$doc.tmp" "$doc"
