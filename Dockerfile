# One image for every process of the bridge: the code-location gRPC server, the Dagster
# webserver and daemon, the two HTTP services, the exporter and the migrations. Each compose
# service (or Helm deployment) gives it its own command.
#
#   docker build --build-arg BUILD_TARGET=production -t bridge-dagster .
#   docker build --build-arg BUILD_TARGET=development -t bridge-dagster:dev .   # + test tools
#
# Dependencies come from uv.lock only (`uv sync --frozen`): the image runs exactly what CI ran.

ARG BUILD_TARGET=production
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS uv
# The same uv the Makefile pins, so the lock is read the same way here and on a laptop.
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# The lock alone first: the dependency layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./

FROM uv AS deps-production
RUN uv sync --frozen --no-dev --no-install-project

FROM uv AS deps-development
RUN uv sync --frozen --no-install-project

# deps-production or deps-development: a stage of this file, not an image to tag.
# hadolint ignore=DL3006
FROM deps-${BUILD_TARGET} AS build
ARG BUILD_TARGET
# Repeated because hadolint cannot follow a stage chosen by a build argument.
WORKDIR /app
COPY bridge_dagster ./bridge_dagster
# Editable install: the package is imported from /app/bridge_dagster, so compose can mount
# the checkout there (MOUNT_MODE=rw in development reloads from the host's files).
RUN if [ "$BUILD_TARGET" = development ]; then uv sync --frozen; \
    else uv sync --frozen --no-dev; fi

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home
RUN groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid bridge --home-dir /home/bridge --create-home \
       --shell /usr/sbin/nologin bridge \
    && mkdir -p /opt/dagster/dagster_home/storage \
    && chown -R bridge:bridge /opt/dagster
# `bridge-dagster backup` / `restore` need pg_dump / pg_restore of the server's major version:
# PostgreSQL 15 in docker-compose.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15=15.* \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build --chown=bridge:bridge /app /app
COPY --chown=bridge:bridge deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/dagster_home/
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001
EXPOSE 3000 4000 8053 8058 9090
CMD ["bridge-dagster", "--help"]
