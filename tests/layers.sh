#!/usr/bin/env bash
# The host's layers import downwards only (DESIGN.md section 2):
#   cli → serve → executor → resolve → runtime → capability → workflow → dag
# with `store`, `dag` and `alloc` importing nothing of the crate, and the CLI's modules
# importing each other without a circle. Fails naming each offending line.
set -euo pipefail
cd "$(dirname "$0")/../host/src"

rank() {
  case "$1" in
    dag | store | alloc) echo 0 ;;
    workflow) echo 1 ;;
    capability) echo 2 ;;
    runtime) echo 3 ;;
    resolve) echo 4 ;;
    executor) echo 5 ;;
    serve) echo 6 ;;
    cli) echo 7 ;;
    *) echo "tests/layers.sh: module \`$1\` has no layer: add it to rank()" >&2; exit 1 ;;
  esac
}

bad=0
for path in $(find . -name '*.rs' ! -name lib.rs ! -name main.rs | sort); do
  module=${path#./}; module=${module%%/*}; module=${module%.rs}
  own=$(rank "$module")
  while IFS=: read -r line used; do
    [ "$used" = "$module" ] && continue
    if [ "$(rank "$used")" -ge "$own" ]; then
      echo "host/src/${path#./}:$line: \`$module\` imports \`$used\`, a layer at or above it"
      bad=1
    fi
  done < <(grep -noE 'crate::[a-z_]+' "$path" | sed 's/crate:://' || true)
done

# The CLI's modules: an edge a -> b for every `super::b` or `crate::cli::b` in cli/a.rs.
edges=$(for f in cli/*.rs; do
  a=$(basename "$f" .rs)
  [ "$a" = mod ] && continue
  { grep -oE '(super|crate::cli)::[a-z_]+' "$f" || true; } | sed -E 's/.*:://' | sort -u |
    while read -r b; do if [ -f "cli/$b.rs" ] && [ "$b" != "$a" ]; then echo "$a $b"; fi; done
done)
if [ -n "$edges" ] && ! tsort <<<"$edges" >/dev/null 2>&1; then
  echo "host/src/cli: its modules import each other in a circle:"
  tsort <<<"$edges" 2>&1 >/dev/null | sed 's/^/  /'
  bad=1
fi

[ "$bad" = 0 ] && echo "layers: ok"
exit "$bad"
