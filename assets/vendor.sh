#!/usr/bin/env bash
# Re-fetches the vendored JavaScript from the npm registry at pinned versions
# and checks each file against its pinned sha256, so the committed copies in
# static/ can be reproduced (and a changed upstream tarball is noticed).
# Bumping a version: change it here, run with UPDATE=1, review, commit.
set -euo pipefail
cd "$(dirname "$0")"

# package@version  file in the tarball  name in static/  sha256
pins=(
	"htmx.org@2.0.11 package/dist/htmx.min.js htmx.min.js d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
	"htmx-ext-sse@2.2.4 package/dist/sse.min.js htmx-ext-sse.min.js 98a46496de0c3605fbffdce9167ba427bdd9553184f83f149c261891a92c0136"
)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for pin in "${pins[@]}"; do
	read -r pkg src dst sum <<<"$pin"
	dir="$tmp/${pkg%@*}"
	mkdir -p "$dir"
	tgz=$(cd "$dir" && npm pack --silent "$pkg" | tail -1)
	tar -xzf "$dir/$tgz" -C "$dir"
	got=$(sha256sum "$dir/$src" | cut -d' ' -f1)
	if [ "$got" != "$sum" ] && [ "${UPDATE:-0}" != 1 ]; then
		echo "vendor.sh: $pkg $src has sha256 $got, pinned $sum (UPDATE=1 to accept)" >&2
		exit 1
	fi
	cp "$dir/$src" "static/$dst"
	cp "$dir/package/LICENSE" "licenses/${pkg%@*}.LICENSE"
	echo "vendor.sh: $pkg -> static/$dst ($got)"
done
