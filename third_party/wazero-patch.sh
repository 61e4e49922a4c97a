#!/bin/sh
# Regenerates third_party/wazero.patch: the unified diff of the patched copy
# in third_party/wazero against the wazero release it was copied from (the
# version go.mod requires, downloaded into the Go module cache). Files left
# out of the copy (see third_party/wazero/PATCHED) are not listed.
# Run from anywhere in the repository: sh third_party/wazero-patch.sh
set -eu
cd "$(dirname "$0")/.."
version=$(go list -m -f '{{.Version}}' github.com/tetratelabs/wazero)
upstream=$(go mod download -json "github.com/tetratelabs/wazero@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
test -d "$upstream" || { echo "wazero $version not in the module cache" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ln -s "$upstream" "$tmp/a"
ln -s "$PWD/third_party/wazero" "$tmp/b"
# diff exits 1 when the trees differ, which they do.
(cd "$tmp" && LC_ALL=C diff -ru a/ b/ || test $? = 1) |
	grep -v '^Only in ' | sed 's/^\(---\|+++\) \([^	]*\)	.*/\1 \2/' >third_party/wazero.patch
echo "third_party/wazero.patch: $(grep -c '^+++ ' third_party/wazero.patch) files against wazero $version"
