# syntax=docker/dockerfile:1
# One image for every service: `community serve <name>` picks the app, `community migrate all`
# runs the Alembic migrations. Build: docker build -t community-platform .

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# .dockerignore keeps virtualenvs, local data, caches and tests out of the context.
COPY . .
# --prefix gives a self-contained tree (site-packages + the `community` script) to copy.
RUN pip install --prefix=/install .

FROM python:3.11-slim
# Whichever service the command picks listens on 0.0.0.0:8000 (EXPOSE, HEALTHCHECK, probes);
# outside a container each service has its own local default port instead.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8000 \
    MEMBERS_HOST=0.0.0.0 MEMBERS_PORT=8000 \
    CONTENT_HOST=0.0.0.0 CONTENT_PORT=8000 \
    CAMPAIGNS_HOST=0.0.0.0 CAMPAIGNS_PORT=8000 \
    REWARDS_HOST=0.0.0.0 REWARDS_PORT=8000 \
    ANALYTICS_HOST=0.0.0.0 ANALYTICS_PORT=8000 \
    WEBHOOKS_HOST=0.0.0.0 WEBHOOKS_PORT=8000
# Fixed uid/gid so Kubernetes' runAsUser: 10001 and file ownership agree.
RUN groupadd --system --gid 10001 community \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin community
COPY --from=builder /install /usr/local
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Stdlib only (no curl in the slim image); urlopen raises on non-2xx, so any failure exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1
ENTRYPOINT ["community"]
CMD ["serve", "gateway"]
