#!/usr/bin/env bash
# What travels to a GPU machine that has no Node, no Redis and no registry (bench/gpu-check.sh
# --pack DIR calls this; it runs HERE, on a machine with Node, npm's node_modules and apt):
#
#   DIR/node.xz          the node running here (process.execPath), xz-compressed (kept when
#                        DIR/manifest.json says it is of the same binary)
#   DIR/stoker.tar.xz    stoker as it runs from its build, no sources: package.json, bin/,
#                        dist/ (tsc + the esbuild bundles of `npm run build`), common/exit-codes.json,
#                        worker/bin, worker/python/src, and the node_modules the bundles keep
#                        external (bullmq, pino, @kubernetes/client-node and what they need:
#                        scripts/bundle.mjs)
#   DIR/redis.tar.xz     redis-server from Debian's packages (apt-get download redis-server
#                        redis-tools liblzf1 libjemalloc2 libatomic1, dpkg -x), with every shared
#                        library ldd finds beyond glibc and libstdc++ in lib/ (run with
#                        LD_LIBRARY_PATH=lib by a wrapper, so the payloads never see it)
#   DIR/manifest.json    versions, sizes and sha256 of the three
# The total, plus the git-tracked tree that travels with it, is checked against 64 MiB.
# Keep DIR out of git (.git/info/exclude; `.travel/` is in .gitignore).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
dir=${1:?usage: bash bench/gpu-pack.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
limit=$((64 * 1024 * 1024))
say() { echo "gpu-pack: $*"; }

# --- stoker's build: fresh, or rebuilt -----------------------------------------------------
newest_src=$(find common fire orchestrator worker testing -name '*.ts' -newer dist/.tsbuildinfo 2>/dev/null | head -1 || true)
if [ ! -f dist/.tsbuildinfo ] || [ ! -f dist/bundle/cli.js ] || [ -n "$newest_src" ]; then
  say "dist/ is missing or older than the sources: npm run build"
  npm run build >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/stoker-pack.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- node -----------------------------------------------------------------------------------
node_bin=$(node -p process.execPath)
node_sha=$(sha256sum "$node_bin" | cut -d' ' -f1)
if [ -f "$dir/node.xz" ] && [ -f "$dir/manifest.json" ] && grep -q "\"nodeSha256\": \"$node_sha\"" "$dir/manifest.json"; then
  say "node $(node --version) from $node_bin: $dir/node.xz is of the same binary, kept"
else
  say "node $(node --version) from $node_bin: compressing (xz, a minute or two)"
  xz -T0 -6 -c "$node_bin" >"$dir/node.xz.tmp" && mv "$dir/node.xz.tmp" "$dir/node.xz"
fi

# --- stoker ---------------------------------------------------------------------------------
pkg="$work/stoker"
mkdir -p "$pkg/common" "$pkg/worker/python"
cp package.json "$pkg/"
cp -r bin dist "$pkg/"
cp common/exit-codes.json "$pkg/common/"
cp -r worker/bin "$pkg/worker/"
cp -r worker/python/src "$pkg/worker/python/"
find "$pkg" -name '__pycache__' -type d -prune -exec rm -rf {} +
# The bundles' external imports and their dependencies, from package-lock.json (the
# @kubernetes/client-node that `stoker run` loads too), without type declarations, source
# maps and Markdown (75 MiB of the client are those).
mapfile -t closure < <(node bench/lib/lock-closure.mjs bullmq pino @kubernetes/client-node)
tar -cf - --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' --exclude='*.map' --exclude='*.md' "${closure[@]}" | tar -C "$pkg" -xf -
tar -C "$work" -cf - stoker | xz -T0 -6 >"$dir/stoker.tar.xz"

# --- redis-server ---------------------------------------------------------------------------
debs="$work/debs"
mkdir -p "$debs" "$work/redis/lib"
if (cd "$debs" && apt-get download redis-server redis-tools liblzf1 libjemalloc2 libatomic1 >/dev/null 2>"$work/apt.err"); then
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$work/unpacked"; done
  real=$(readlink -f "$work/unpacked/usr/bin/redis-server")
  cp "$real" "$work/redis/redis-server"
  cp -P "$work/unpacked/usr/lib/x86_64-linux-gnu/"*.so* "$work/redis/lib/" 2>/dev/null || true
  redis_from="Debian packages: $(cd "$debs" && ls -- *.deb | tr '\n' ' ')"
else
  say "apt-get download failed ($(tail -1 "$work/apt.err")); taking the installed redis-server"
  cp "$(readlink -f "$(command -v redis-server)")" "$work/redis/redis-server"
  redis_from="the installed $(command -v redis-server)"
fi
# Every library ldd resolves outside the pack, beyond glibc's own and the C++ runtime, travels too.
LD_LIBRARY_PATH="$work/redis/lib" ldd "$work/redis/redis-server" | awk '/=> \// {print $1, $3}' | while read -r name path; do
  case "$name" in
    libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | ld-linux* | libstdc++.so.* | libgcc_s.so.*) continue ;;
  esac
  [ -e "$work/redis/lib/$name" ] || cp "$(readlink -f "$path")" "$work/redis/lib/$name"
done
if LD_LIBRARY_PATH="$work/redis/lib" ldd "$work/redis/redis-server" | grep -q 'not found'; then
  say "redis-server misses libraries:"
  LD_LIBRARY_PATH="$work/redis/lib" ldd "$work/redis/redis-server" | grep 'not found'
  exit 1
fi
redis_version=$(LD_LIBRARY_PATH="$work/redis/lib" "$work/redis/redis-server" --version)
tar -C "$work" -cf - redis | xz -T0 -6 >"$dir/redis.tar.xz"

# --- manifest and the size check --------------------------------------------------------------
tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
node - "$dir" "$tracked" "$limit" "$(node --version)" "$redis_version" "$redis_from" "$node_sha" <<'EOF'
const { createHash } = require('node:crypto');
const { readFileSync, statSync, writeFileSync } = require('node:fs');
const [dir, tracked, limit, nodeVersion, redisVersion, redisFrom, nodeSha] = process.argv.slice(2);
const files = {};
let total = 0;
for (const name of ['node.xz', 'stoker.tar.xz', 'redis.tar.xz']) {
  const bytes = statSync(`${dir}/${name}`).size;
  total += bytes;
  files[name] = { bytes, sha256: createHash('sha256').update(readFileSync(`${dir}/${name}`)).digest('hex') };
}
const manifest = {
  packedAt: new Date().toISOString(),
  node: nodeVersion,
  nodeSha256: nodeSha,
  redis: redisVersion,
  redisFrom,
  stoker: JSON.parse(readFileSync('package.json', 'utf8')).version,
  files,
  packBytes: total,
  trackedTreeBytes: Number(tracked),
  limitBytes: Number(limit),
};
writeFileSync(`${dir}/manifest.json`, `${JSON.stringify(manifest, null, 1)}\n`);
const mib = (n) => (n / 1048576).toFixed(1);
for (const [name, f] of Object.entries(files)) console.log(`gpu-pack: ${name.padEnd(14)} ${mib(f.bytes).padStart(6)} MiB`);
console.log(`gpu-pack: pack ${mib(total)} MiB + tracked tree ${mib(Number(tracked))} MiB = ${mib(total + Number(tracked))} MiB of ${mib(Number(limit))} MiB`);
if (total + Number(tracked) > Number(limit)) {
  console.error(`gpu-pack: over the ${mib(Number(limit))} MiB that may travel`);
  process.exit(1);
}
EOF
say "packed into $dir"
