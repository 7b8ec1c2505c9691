#!/usr/bin/env bash
# The wheel outside the checkout: build catgad's wheel and the example plugin's, install
# both in a fresh venv in a temporary directory, copy config/examples there and run
# `catgad validate`, `catgad test`, `catgad schema`, `catgad bench` (which must say it needs
# a checkout) and a short `catgad run`: start, /readyz, one command, SIGTERM, exit 0.
# Run from the checkout with the python that builds: bash .ci/wheel-outside-checkout.sh
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$PWD"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" . plugins/catgad_example_plugin
python -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' \
    "$work"/wheels/catgad-[0-9]*.whl > "$work/contents"
grep -qx 'catgad/schema/catgad.schema.json' "$work/contents" || { echo "no schema in the wheel" >&2; exit 1; }
grep -qx 'catgad-[^/]*\.dist-info/licenses/LICENSE' "$work/contents" || { echo "no LICENSE in the wheel" >&2; exit 1; }
if grep -q '^bench/' "$work/contents"; then echo "the wheel carries bench/" >&2; exit 1; fi

"$(python -c 'import sys; print(sys._base_executable)')" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$work"/wheels/*.whl
cp -r config/examples "$work/examples"
cd "$work/examples"
catgad="$work/venv/bin/catgad"
[ "$("$work/venv/bin/python" -c 'import catgad; print(catgad.__file__)')" != "$checkout/catgad/__init__.py" ]

"$catgad" validate orders.yaml
"$catgad" test orders.yaml
"$catgad" schema | "$work/venv/bin/python" -c 'import json, sys; assert json.load(sys.stdin)["$id"]'
set +e
"$catgad" bench --quick > "$work/bench.out" 2> "$work/bench.err"
code=$?
set -e
if [ "$code" != 2 ] || [ "$(wc -l < "$work/bench.err")" != 1 ] || grep -q Traceback "$work/bench.err"; then
    echo "catgad bench outside a checkout: exit $code, expected 2 and one line:" >&2
    cat "$work/bench.err" >&2
    exit 1
fi

port="$("$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
CATGAD_SQLITE_PATH="$work/orders.db" "$catgad" run orders.yaml --listen "127.0.0.1:$port" > "$work/run.log" 2>&1 &
daemon=$!
ready=""
for _ in $(seq 1 240); do  # up to two minutes on a busy machine
    if curl -fs -o /dev/null "http://127.0.0.1:$port/readyz"; then ready=yes; break; fi
    kill -0 "$daemon" 2>/dev/null || { cat "$work/run.log" >&2; exit 1; }
    sleep 0.5
done
[ -n "$ready" ] || { echo "catgad run: not ready in time" >&2; cat "$work/run.log" >&2; exit 1; }
curl -fsS -XPOST "http://127.0.0.1:$port/commands/CreateOrder" \
    -d '{"order_id":"w1","customer":"ci","items":[{"sku":"book","qty":1,"price":100}]}' \
    | grep -q '"type":"OrderCreated"'
kill -TERM "$daemon"
wait "$daemon"  # set -e: a non-zero exit fails the job
echo "wheel outside the checkout: validate, test, schema, bench and run OK"
