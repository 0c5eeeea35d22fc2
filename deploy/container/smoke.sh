#!/usr/bin/env bash
# Builds deploy/container/Containerfile with podman, runs the image with its ports published on
# 127.0.0.1 only, waits until the container's HEALTHCHECK reports healthy, submits one reading with
# the `heartrate` CLI through the published port (with a token signed by the container's own
# development key: the image runs with AUTH_MODE=jwt, its default off loopback), reads it back,
# and stops the container with SIGTERM. Not part of `make test` (it needs podman, a base image
# and several minutes of both cores).
#
#   deploy/container/smoke.sh                      # base: the Containerfile's (needs a registry)
#   LOCAL_BASE=1 deploy/container/smoke.sh         # no registry: a bookworm + python3 base made
#                                                  # with debootstrap from Debian's mirror
#
# Settings (environment): IMAGE, NAME, GRPC_HOST_PORT (50061), METRICS_HOST_PORT (18080),
# BASE_IMAGE (with LOCAL_BASE=1: localhost/heartrate-base:bookworm-py3.11), DEBIAN_MIRROR,
# HEALTH_TIMEOUT_S (600), RUN_OPTS / BUILD_OPTS (extra podman options; when unset, the script
# probes whether the machine needs `--runtime runc` and lower ulimits, see below), BUILD_CA (a CA
# bundle for pip during the build; default $PIP_CERT), KEEP=1 keeps the container and volume.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${IMAGE:-localhost/heartrate-serve:smoke}
NAME=${NAME:-heartrate-smoke}
VOLUME=${NAME}-data
GRPC_HOST_PORT=${GRPC_HOST_PORT:-50061}
METRICS_HOST_PORT=${METRICS_HOST_PORT:-18080}
HEALTH_TIMEOUT_S=${HEALTH_TIMEOUT_S:-600}
LOCAL_BASE=${LOCAL_BASE:-0}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CONTAINERFILE=deploy/container/Containerfile
CLI=${CLI:-.venv/bin/heartrate}
if [[ $LOCAL_BASE == 1 ]]; then
  BASE_IMAGE=${BASE_IMAGE:-localhost/heartrate-base:bookworm-py3.11}
fi
BASE_IMAGE=${BASE_IMAGE:-$(sed -n 's/^ARG BASE_IMAGE=//p' "$CONTAINERFILE")}

log() { printf '[smoke %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
command -v podman >/dev/null || { echo "podman not found (apt-get install podman)" >&2; exit 1; }

cleanup() {
  if [[ ${KEEP:-0} != 1 ]]; then
    podman rm -f -t 5 "$NAME" >/dev/null 2>&1 || true
    podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# A stand-in for the registry's base: Debian bookworm (minbase) with its python3 (3.11) and
# python3-venv, made with debootstrap and imported as an image. Only when it is not there yet.
make_local_base() {
  if podman image exists "$BASE_IMAGE"; then
    log "base $BASE_IMAGE exists"
    return
  fi
  command -v debootstrap >/dev/null || { echo "debootstrap not found" >&2; exit 1; }
  local root
  root=$(mktemp -d /var/tmp/heartrate-base.XXXXXX)
  log "debootstrap bookworm into $root"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    exit 1
  }
  cat >"$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security bookworm-security main
EOF
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$root" "$root.log"
  log "base $BASE_IMAGE imported ($(podman image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"
}

[[ $LOCAL_BASE == 1 ]] && make_local_base

# Some hosts cannot run podman's defaults: crun refuses cgroup v1+v2 hybrid hosts, and without
# CAP_SYS_RESOURCE podman's default nofile/nproc limits cannot be set. Probe with the base image.
if [[ -z ${RUN_OPTS+x} ]]; then
  podman image exists "$BASE_IMAGE" || podman pull -q "$BASE_IMAGE" >/dev/null
  for opts in "" "--runtime runc --ulimit nofile=16384:16384 --ulimit nproc=32768:32768"; do
    # shellcheck disable=SC2086
    if podman run --rm $opts "$BASE_IMAGE" true >/dev/null 2>&1; then
      RUN_OPTS=$opts
      break
    fi
  done
  [[ -n ${RUN_OPTS+x} ]] || { echo "podman cannot run $BASE_IMAGE here" >&2; exit 1; }
  BUILD_OPTS=${BUILD_OPTS-$RUN_OPTS}
  log "run options: ${RUN_OPTS:-none}"
fi
BUILD_OPTS=${BUILD_OPTS-}
# Behind a TLS-inspecting proxy pip needs its CA: the bundle this machine's pip uses (PIP_CERT),
# mounted for the build only.
BUILD_CA=${BUILD_CA:-${PIP_CERT:-}}
ca_opts=()
if [[ -n $BUILD_CA ]]; then
  ca_opts=(-v "$BUILD_CA:/run/build-ca.pem:ro" --build-arg PIP_CERT=/run/build-ca.pem)
fi

# --format docker: the OCI format has no HEALTHCHECK.
log "build $IMAGE from $BASE_IMAGE"
started=$(date +%s)
# shellcheck disable=SC2086
podman build --format docker $BUILD_OPTS "${ca_opts[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  -f "$CONTAINERFILE" -t "$IMAGE" .
log "built in $(($(date +%s) - started)) s; image size $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"

cleanup
podman volume create "$VOLUME" >/dev/null
log "run $NAME: gRPC on 127.0.0.1:$GRPC_HOST_PORT, metrics on 127.0.0.1:$METRICS_HOST_PORT"
started=$(date +%s)
# shellcheck disable=SC2086
podman run -d --name "$NAME" $RUN_OPTS --shm-size 1g --stop-timeout 60 \
  -p "127.0.0.1:$GRPC_HOST_PORT:50051" -p "127.0.0.1:$METRICS_HOST_PORT:8080" \
  -v "$VOLUME:/var/lib/heartrate" "$IMAGE" >/dev/null

# podman runs HEALTHCHECKs from systemd timers; where there is no systemd, run them here at the
# image's interval (`podman healthcheck run` records the result just the same).
interval=15
health=starting
while [[ $health != healthy ]]; do
  if [[ $(podman inspect --format '{{.State.Running}}' "$NAME") != true ]]; then
    podman logs "$NAME" | tail -40 >&2
    echo "the container stopped before it was healthy" >&2
    exit 1
  fi
  if (($(date +%s) - started > HEALTH_TIMEOUT_S)); then
    podman logs "$NAME" | tail -40 >&2
    echo "not healthy after $HEALTH_TIMEOUT_S s (health: $health)" >&2
    exit 1
  fi
  sleep "$interval"
  podman healthcheck run "$NAME" >/dev/null 2>&1 || true
  health=$(podman inspect --format '{{.State.Health.Status}}' "$NAME")
done
log "healthy after $(($(date +%s) - started)) s"
podman logs "$NAME" 2>&1 | grep -E 'SERVING|warning' || true

# A token for user smoke, signed with the development key the launcher made in DATA_DIR/auth.
HEARTRATE_TOKEN=$(podman exec "$NAME" heartrate token issue --user smoke \
  --scope "heartrate:read heartrate:write" --ttl 10m)
export HEARTRATE_TOKEN
if [[ -x $CLI ]]; then
  client=("$CLI" --address "127.0.0.1:$GRPC_HOST_PORT")  # through the published port
else
  client=(podman exec -e HEARTRATE_TOKEN "$NAME" heartrate)
fi
"${client[@]}" --user smoke submit 72
"${client[@]}" --user smoke status --recent 1
if command -v curl >/dev/null; then
  log "metrics: $(curl -sf "127.0.0.1:$METRICS_HOST_PORT/metrics" | grep -c '^ray_' || true) ray_* samples"
fi

log "stop (SIGTERM)"
started=$(date +%s)
podman stop -t 60 "$NAME" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
log "stopped in $(($(date +%s) - started)) s, exit code $code"
podman logs "$NAME" 2>&1 | tail -3
[[ $code == 0 ]] || { echo "exit code $code after SIGTERM" >&2; exit 1; }
log "ok"
