# dockfleet service image: SQLite by default in /data; mount the Docker socket and any SSH/TLS
# secrets the registered hosts need.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DOCKFLEET_DATABASE_URL=sqlite+aiosqlite:////data/dockfleet.db \
    DOCKFLEET_HOST=0.0.0.0 DOCKFLEET_PORT=9595

WORKDIR /srv/dockfleet
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir '.[postgres]' && mkdir -p /data

EXPOSE 9595
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9595/healthz')"
CMD ["dockfleet", "serve"]
