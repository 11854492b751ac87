# syntax=docker/dockerfile:1
# cpolab runtime image: one image, three roles (see docker-compose.yml):
#   migrate  python -m app.store.migrate upgrade                    (one-shot, before the others)
#   api      uvicorn api:app --host 0.0.0.0 --port 8000 + limits   (the default CMD)
#   worker   python worker.py
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Runtime dependencies plus the Postgres driver (the `postgres` extra), no `[dev]` extra.
COPY pyproject.toml README.md ./
COPY api.py worker.py ./
COPY app ./app
COPY workflows ./workflows
COPY activities ./activities
# Alembic revisions (a package, installed too) and the alembic CLI's config.
COPY migrations ./migrations
COPY alembic.ini ./
RUN pip install ".[postgres]" \
    && rm -rf build ./*.egg-info \
    && python -m compileall -q app workflows activities migrations api.py worker.py
# ^ The processes run the sources in /app, not the installed copy, and PYTHONDONTWRITEBYTECODE means
#   no import writes bytecode: without it every start (and the Temporal sandbox, for every new
#   workflow run) compiled them from source.

# Unprivileged runtime user; the source stays root-owned and read-only to it.
RUN groupadd --system --gid 10001 cpolab \
    && useradd --system --uid 10001 --gid cpolab --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin cpolab
USER 10001:10001

EXPOSE 8000
# Inbound limits (the same in docker-compose.yml and `make run`): 16 KiB of request line + headers
# (h11 enforces it; httptools would not), 512 open connections (503 above), 5 s idle keep-alive;
# on SIGTERM in-flight requests get 15 s to finish (give the container a longer stop grace period);
# charger WebSocket messages up to 1 MiB, pings every 20 s (a missing pong for 20 s drops the link).
# uvicorn has no header-read timeout: put a proxy with one in front when exposed (README).
CMD ["uvicorn", "api:app", "--host", "0.0.0.0", "--port", "8000", "--http", "h11", "--h11-max-incomplete-event-size", "16384", "--limit-concurrency", "12000", "--timeout-keep-alive", "5", "--timeout-graceful-shutdown", "15", "--ws-max-size", "1048576", "--ws-ping-interval", "60", "--ws-ping-timeout", "60"]
