#!/usr/bin/env bash
# The demo: build orch and run the example workflows of this directory.
# Set-up included (wasm target, services for the provisioning workflows).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
bash tests/services.sh start
# shellcheck disable=SC1090
source "$(bash tests/services.sh env)"

cargo build --bin orch
orch=./target/debug/orch
export ORCH_DATABASE_URL=${ORCH_DATABASE_URL:-sqlite://$PWD/target/demo/orch.db}

$orch validate workflows/*.toml
$orch graph workflows/hello.toml
$orch plan workflows/hello.toml --input who=datalab
$orch run workflows/hello.toml --input who=datalab

# The seed pipeline's PostgreSQL jobs against the private test PostgreSQL, then a small ETL.
export POSTGRES_ADMIN_URL=$ORCH_TEST_POSTGRES_URL
$orch plan workflows/postgres.toml --input db_user=datalab --input db_name=datalab
$orch run workflows/postgres.toml --input db_user=datalab --input db_name=datalab
$orch run workflows/postgres.toml --input db_user=datalab --input db_name=datalab # no change
$orch run workflows/etl-postgres.toml

# The seed pipeline's Kafka jobs against the local broker, then Kafka -> PostgreSQL.
export KAFKA_BOOTSTRAP=$ORCH_TEST_KAFKA
$orch run workflows/kafka.toml --input topic=events --input group=etl
$orch run workflows/etl-kafka-postgres.toml
# The seed pipeline's deploy job against the local Docker-API engine (podman), from
# workflows/deploy/compose.yml: deploy, redeploy (nothing recreated), then with the dev profile.
export DOCKER_HOST=$ORCH_TEST_DOCKER_HOST
$orch plan workflows/deploy.toml
$orch run workflows/deploy.toml
$orch run workflows/deploy.toml # no change
$orch run workflows/deploy.toml --input 'profiles=["dev"]'
# A job no built-in plugin covers, in a container (removed afterwards), its outputs read back.
$orch plan workflows/container.toml
$orch run workflows/container.toml --input day=2026-12-07
# The seed pipeline's Ollama job and an LLM pipeline. No Ollama binary is reachable here:
# tests/servers/ollama.py speaks Ollama's documented HTTP API (fake models, deterministic
# answers); tests/servers/httpbin.py is the data source. Point OLLAMA_URL at a real server to
# use one.
servers=()
trap 'kill "${servers[@]}" 2>/dev/null || true' EXIT
start_server() { # SCRIPT VAR: start a test server, export VAR=http://127.0.0.1:PORT
  local port_file; port_file=$(mktemp)
  python3 "tests/servers/$1" >"$port_file" &
  servers+=($!)
  for _ in $(seq 50); do [ -s "$port_file" ] && break; sleep 0.1; done
  export "$2=http://127.0.0.1:$(head -1 "$port_file")"
}
start_server ollama.py OLLAMA_URL
start_server httpbin.py SOURCE_URL
$orch plan workflows/ollama.toml --input pull=llama3.2
$orch run workflows/ollama.toml --input pull=llama3.2
$orch run workflows/ollama.toml --input pull=llama3.2 # already pulled: skipped
$orch run workflows/llm-summarise.toml
# A GitLab pipeline of the seed's shape brought across: its `docker exec psql/kafka-*.sh/ollama`
# lines become postgres, kafka and ollama steps; what did not translate is in the report.
$orch import gitlab tests/fixtures/gitlab/seed/.gitlab-ci.yml --out target/demo/import --name datalab --force
sed -n '/^## Not translated/,/^## Before/p' target/demo/import/import-report.md
PG_ADMIN_URL=$ORCH_TEST_POSTGRES_URL DB_PASSWORD=demo-imported-pw \
  $orch plan target/demo/import/datalab.toml --input postgres_db_user=imported --input kafka_topic=imported
$orch runs list --limit 5
# Service mode: serve this directory, trigger a run over the API and follow it, show the
# schedules, then stop gracefully (SIGTERM).
token=$($orch token create demo)
$orch serve --workflows workflows --bind 127.0.0.1:18080 2> >(sed 's/^/  serve: /' >&2) &
serve_pid=$!
servers+=("$serve_pid")
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null 2>&1 && break; sleep 0.2; done
$orch trigger hello --server http://127.0.0.1:18080 --token "$token" --input who=api --wait
# The web page: the demo signs in as a browser would and reads the runs list.
jar=$(mktemp)
nonce=$(curl -sf -c "$jar" http://127.0.0.1:18080/login | sed -n 's/.*name="login_csrf" value="\([0-9a-f]*\)".*/\1/p')
curl -sf -b "$jar" -c "$jar" -o /dev/null -d "login_csrf=$nonce&token=$token" http://127.0.0.1:18080/login
curl -sf -b "$jar" http://127.0.0.1:18080/ | grep -q 'table class="runs"' && echo "web page: runs list rendered"
rm -f "$jar"
mkdir -p target/demo && (umask 077 && printf '%s\n' "$token" >target/demo/web-token)
echo "Open http://127.0.0.1:18080/ in a browser and sign in with the token in target/demo/web-token"
if [ -t 0 ]; then read -rp "Press Enter to stop the server... " _; fi
$orch workers list # this server is the one worker (SQLite); on PostgreSQL, every `orch serve`
$orch schedule list --workflows workflows
kill -TERM "$serve_pid" && wait "$serve_pid" || true
$orch token revoke demo
