# dockfleet service image. Two stages: `build` makes a venv with the pinned dependencies
# (requirements-image.txt, from PyPI) and dockfleet itself; the final stage copies that venv
# onto a clean base and runs as the unprivileged user `dockfleet` (uid 10001).
#
#   docker build -t dockfleet .                              # base: python:3.11-slim-bookworm
#   docker build --build-arg BASE_IMAGE=my/bookworm-python -t dockfleet .
#
# BASE_IMAGE must have python3 (3.11+) with the venv module and CA certificates; `make
# image-test` makes such a base itself from Debian packages (debootstrap, no image registry).
# Run it with the Docker socket it drives and the socket's group (see README "Container image"):
#   docker run -d -p 9595:9595 --env-file dockfleet.env -v dockfleet-data:/data \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" dockfleet
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# pip trusts the base image's CA store (a base made for a site with its own CA works too)
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/dockfleet
WORKDIR /src
# the dependencies first: this layer is reused until requirements-image.txt changes
COPY requirements-image.txt ./
RUN /opt/dockfleet/bin/pip install --no-deps -r requirements-image.txt
COPY pyproject.toml README.md ./
COPY app ./app
RUN /opt/dockfleet/bin/pip install --no-deps . && /opt/dockfleet/bin/pip check \
    && /opt/dockfleet/bin/pip uninstall --yes --quiet pip setuptools

FROM ${BASE_IMAGE}
ENV PATH=/opt/dockfleet/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/data \
    DOCKFLEET_DATABASE_URL=sqlite+aiosqlite:////data/dockfleet.db \
    DOCKFLEET_HOST=0.0.0.0 DOCKFLEET_PORT=9595 \
    DOCKFLEET_SECRETS_DIR=/secrets
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin dockfleet \
    && mkdir -p /data /secrets && chown dockfleet:dockfleet /data && chmod 0700 /data
COPY --from=build /opt/dockfleet /opt/dockfleet
# migrations are applied at start from the working directory (alembic.ini + migrations/)
WORKDIR /srv/dockfleet
COPY alembic.ini ./
COPY migrations ./migrations
USER dockfleet
EXPOSE 9595
VOLUME ["/data"]
# /healthz needs no token: 200 while the database is readable and writable, else 503
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["python3", "-c", \
    "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DOCKFLEET_PORT', '9595'), timeout=4)"]
CMD ["dockfleet", "serve"]
