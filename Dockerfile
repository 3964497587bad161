# syntax=docker/dockerfile:1.7
# The image of every gRPC service; SERVICE picks which. Build from the repository root (the
# uv workspace):
#   docker build --build-arg SERVICE=routing -t inbox-routing .
# (presence, routing, contacts or replies; the console edge has its own,
# services/console/Dockerfile: a Node stage and an HTTP health check.)
# Dependencies are installed exactly as pinned in uv.lock (--locked fails on a stale lock).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---- build: resolve and install into /app/.venv ------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# 1. Third-party dependencies only: this layer is rebuilt only when the lock changes.
#    uv needs every workspace member's pyproject.toml to check the lock.
COPY pyproject.toml uv.lock ./
COPY libs/contracts/pyproject.toml libs/contracts/pyproject.toml
COPY libs/kit/pyproject.toml libs/kit/pyproject.toml
COPY libs/devstack/pyproject.toml libs/devstack/pyproject.toml
COPY libs/testing/pyproject.toml libs/testing/pyproject.toml
COPY libs/cli/pyproject.toml libs/cli/pyproject.toml
COPY services/presence/pyproject.toml services/presence/pyproject.toml
COPY services/routing/pyproject.toml services/routing/pyproject.toml
COPY services/contacts/pyproject.toml services/contacts/pyproject.toml
COPY services/replies/pyproject.toml services/replies/pyproject.toml
COPY services/console/pyproject.toml services/console/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-workspace --package inbox-${SERVICE}

# 2. Our code: the shared contracts and kit, and the service itself (installed, not editable).
COPY libs/contracts libs/contracts
COPY libs/kit libs/kit
COPY services/${SERVICE} services/${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package inbox-${SERVICE}

# ---- runtime: the virtualenv on a slim base, as a non-root user --------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
RUN groupadd --system --gid 10001 inbox \
    && useradd --system --uid 10001 --gid inbox --no-create-home --shell /usr/sbin/nologin inbox
COPY --from=build --chown=10001:10001 /app/.venv /app/.venv
COPY --chmod=0755 deploy/image/entrypoint.sh /app/entrypoint
# entrypoint: binds 0.0.0.0 and the service's documented ports (presence 7061/9461, routing
# 7062/9462, contacts 7063/9463, replies 7064/9464: gRPC/metrics) unless <PREFIX>GRPC_HOST,
# <PREFIX>GRPC_PORT or <PREFIX>METRICS_PORT say otherwise; compose and the manifests publish them
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INBOX_SERVICE=${SERVICE}
USER 10001:10001
WORKDIR /app
# gRPC health (grpc.health.v1): healthy only while the server reports SERVING.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/entrypoint", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/entrypoint"]
