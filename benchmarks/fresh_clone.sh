#!/usr/bin/env bash
# The README's main command timed as a new user meets it: clone, bootstrap, train and test (docs/results.md, "The main
# job"). Usage: bash benchmarks/fresh_clone.sh [repository, default: this one] [clone folder, default: a temp dir].
# Run it on an otherwise idle machine; ../shared beside the clone is not needed for the default preset.
set -euo pipefail
repo=${1:-$(git -C "$(dirname "$0")" rev-parse --show-toplevel)}
dest=${2:-$(mktemp -d)/faceinsight}
t0=$(date +%s)
git clone -q "$repo" "$dest"
cd "$dest"
bash scripts/bootstrap.sh
t1=$(date +%s)
.venv/bin/faceinsight fit -c configs/synthface.yaml
t2=$(date +%s)
echo "clone $dest at $(git rev-parse --short HEAD): bootstrap $((t1 - t0)) s; fit and test $((t2 - t1)) s; main job total $((t2 - t0)) s"
