#!/usr/bin/env bash
# The host's layers import downwards only (DESIGN.md section 2):
#   cli (and the bench and fuzz facades) → serve → executor → resolve → runtime → capability → workflow → dag
# with `store`, `dag`, `alloc` and `oci` importing nothing of the crate, and the CLI's modules
# importing each other without a circle. Fails naming each offending line.
set -euo pipefail
cd "$(dirname "$0")/../host/src"

rank() {
  case "$1" in
    dag | store | alloc | oci) echo 0 ;;
    workflow) echo 1 ;;
    capability | import) echo 2 ;;
    runtime) echo 3 ;;
    resolve) echo 4 ;;
    executor) echo 5 ;;
    serve) echo 6 ;;
    cli | bench | fuzz) echo 7 ;;
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

# The CLI's modules (cli/*.rs and cli/cmd/*.rs): an edge a -> b for every `super::b`,
# `super::super::b` or `crate::cli::b` that names another module file; tsort finds a circle.
edges=$(python3 - <<'PY'
import pathlib, re
root = pathlib.Path("cli")
mods = {}
for f in root.rglob("*.rs"):
    parts = f.relative_to(root).with_suffix("").parts
    mods[parts[:-1] if parts[-1] == "mod" else parts] = f
for path, f in mods.items():
    here = path[:-1]  # what `super` names, for `mod.rs` and other files alike
    for m in re.finditer(r"\b(crate::cli|super::super|super)::([a-z_]+)(?:::([a-z_]+))?", f.read_text()):
        base = {"crate::cli": (), "super::super": here[:-1], "super": here}[m.group(1)]
        target = base + (m.group(2),)
        if m.group(3) and target + (m.group(3),) in mods:
            target = target + (m.group(3),)
        if target in mods and target != path and target != ():
            print("/".join(path) or "mod", "/".join(target))
PY
)
if [ -n "$edges" ] && ! tsort <<<"$edges" >/dev/null 2>&1; then
  echo "host/src/cli: its modules import each other in a circle:"
  tsort <<<"$edges" 2>&1 >/dev/null | sed 's/^/  /'
  bad=1
fi

[ "$bad" = 0 ] && echo "layers: ok"
exit "$bad"
