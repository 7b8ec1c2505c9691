#!/usr/bin/env bash
# Lowest direct versions: every lower bound in pyproject.toml must be one that works. uv
# resolves each direct dependency (and test tool) to the lowest version pyproject allows,
# in a venv of its own in a temporary directory, and a fast slice of the suite that
# touches every library runs on it. How each bound was found: docs/dependencies.md.
# Run from the checkout: bash .ci/lowest-versions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
base="$(python3 -c 'import sys; print(sys._base_executable)')"

"$base" -m venv "$work/uv"
"$work/uv/bin/python" -m pip install --quiet uv
"$work/uv/bin/uv" venv --quiet --python "$base" "$work/venv"
"$work/uv/bin/uv" pip install --quiet --python "$work/venv/bin/python" \
    --resolution lowest-direct -e '.[test]' -e plugins/catgad_example_plugin
"$work/uv/bin/uv" pip list --python "$work/venv/bin/python" 2>/dev/null \
    | grep -iE '^(pyyaml|jsonschema|jsonschema-rs|orjson|common-expression-language|cel-python|starlette|uvicorn|httpx|httpcore|structlog|prometheus-client|redis|psycopg|psycopg-pool|httptools|sniffio|nats-py|aiokafka|uvloop|graphviz|pytest|pytest-asyncio|hypothesis) ' \
    | tr -s ' ' | paste -sd ' ' | sed 's/^/lowest versions: /'

# One or two files per library: config (pyyaml, jsonschema, jsonschema-rs, both CEL
# libraries), engine, a store per backend (psycopg, redis, nats-py), each bus (nats-py,
# aiokafka), HTTP (starlette, httpx), webhooks (httpcore, standardwebhooks), the CEL fast
# path (cel-python's parser), diagrams (graphviz), the canaries, and a daemon (uvicorn,
# httptools, uvloop, structlog, prometheus-client).
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider -n 4 \
    tests/canary \
    tests/config/test_config_cases.py tests/config/test_config_loader.py \
    tests/config/test_config_schema.py \
    tests/engine/test_engine.py \
    tests/store/test_sqlite.py::TestSQLiteStoreFull \
    tests/store/test_postgres.py::TestPostgresStore \
    tests/store/test_redis.py::TestRedisStore \
    tests/store/test_nats.py::TestNATSStoreOnCurrent \
    tests/bus/test_bus_nats.py tests/bus/test_bus_kafka.py \
    tests/http/test_http_reads.py \
    tests/handlers/test_webhook_signing.py \
    tests/projections/test_fastcel.py \
    tests/diagrams \
    "tests/docs/test_sessions.py::test_the_page_sessions_are_what_the_daemon_answers[README.md]"
