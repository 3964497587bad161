#!/bin/sh
# Entry point of the services' image (the repository's Dockerfile, built with
# --build-arg SERVICE=<presence|routing|contacts|replies>; INBOX_SERVICE is that argument).
# Defaults the service's bind address to 0.0.0.0 and its ports to the documented ones unless
# the environment sets them (<PREFIX>GRPC_HOST, <PREFIX>GRPC_PORT, <PREFIX>METRICS_PORT), then
# runs its console script. "entrypoint healthcheck": the gRPC health of the running service.
set -eu
case "${INBOX_SERVICE:-}" in
  presence) grpc=7061 metrics=9461 ;;
  routing) grpc=7062 metrics=9462 ;;
  contacts) grpc=7063 metrics=9463 ;;
  replies) grpc=7064 metrics=9464 ;;
  *) echo "INBOX_SERVICE must be presence, routing, contacts or replies" >&2; exit 64 ;;
esac
prefix=$(printf '%s' "$INBOX_SERVICE" | tr '[:lower:]' '[:upper:]')_
eval ": \"\${${prefix}GRPC_HOST:=0.0.0.0}\" \"\${${prefix}GRPC_PORT:=$grpc}\""
eval ": \"\${${prefix}METRICS_PORT:=$metrics}\""
export "${prefix}GRPC_HOST" "${prefix}GRPC_PORT" "${prefix}METRICS_PORT"
if [ "${1:-}" = healthcheck ]; then
  eval "port=\${${prefix}GRPC_PORT}"
  # healthy only while the server reports SERVING (grpc.health.v1)
  exec python -c 'import sys, grpc
from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g
channel = grpc.insecure_channel("127.0.0.1:" + sys.argv[1])
reply = g.HealthStub(channel).Check(h.HealthCheckRequest(), timeout=3)
sys.exit(0 if reply.status == h.HealthCheckResponse.SERVING else 1)' "$port"
fi
exec "inbox-$INBOX_SERVICE" "$@"
