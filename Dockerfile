# syntax=docker/dockerfile:1
#
# forwarder container image.
#
#   docker build -t forwarder:dev .
#   docker run --rm -p 9095:9095 -v forwarder-data:/var/lib/forwarder \
#     -e BIGPANDA_TOKEN=... -e BIGPANDA_APP_KEY=... forwarder:dev
#   docker run --rm forwarder:dev check-config
#
# The base image is pinned by tag (Python minor version + Debian release). For
# fully reproducible builds pin the digest too, e.g.
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder
# Builds the package and its dependencies into a self-contained virtualenv at
# /opt/forwarder. Both stages use the same base image, so the venv's
# interpreter path (/usr/local/bin/python3.11) is valid in the final stage.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/forwarder

WORKDIR /src
# README.md is referenced by pyproject.toml (project.readme), so it is needed
# to build the wheel.
COPY pyproject.toml README.md ./
COPY forwarder/ ./forwarder/
# The "postgres" extra (asyncpg) lets one image serve both queue backends
# (queue.backend: sqlite | postgres); it adds about 12 MB installed.
RUN /opt/forwarder/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/forwarder/bin/pip install "$(ls /tmp/wheels/forwarder-*.whl)[postgres]" \
 && /opt/forwarder/bin/python -c "import asyncpg" \
 && /opt/forwarder/bin/forwarder --help >/dev/null

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="forwarder" \
      org.opencontainers.image.description="Durable alert forwarder from Kapacitor and InfluxDB 2.x to BigPanda" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed, unprivileged uid/gid so volume ownership is predictable
# (chown 10001:10001 a host directory before bind-mounting it).
RUN groupadd --system --gid 10001 forwarder \
 && useradd --system --uid 10001 --gid forwarder --no-create-home \
      --home-dir /var/lib/forwarder --shell /usr/sbin/nologin forwarder \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/forwarder

COPY --from=builder /opt/forwarder /opt/forwarder
COPY config/ /etc/forwarder/
COPY deploy/docker/healthcheck.py /usr/local/bin/forwarder-healthcheck

ENV PATH=/opt/forwarder/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FORWARDER_LISTEN=0.0.0.0:9095 \
    FORWARDER_DATA_DIR=/var/lib/forwarder \
    FORWARDER_CONFIG=/etc/forwarder/forwarder.yaml

USER 10001:10001
WORKDIR /var/lib/forwarder

# The SQLite spool. Without a volume, queued alerts are lost with the container.
# (With queue.backend: postgres the queue is in the database; no volume needed.)
VOLUME ["/var/lib/forwarder"]
EXPOSE 9095

# SIGTERM drains the in-flight work (bounded by server.shutdown_timeout); give
# `docker stop` a longer timeout than that, e.g. `docker stop -t 30`.
STOPSIGNAL SIGTERM

# slim has no curl: the helper uses urllib and reads FORWARDER_LISTEN.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "/usr/local/bin/forwarder-healthcheck"]

ENTRYPOINT ["forwarder"]
CMD ["run"]
