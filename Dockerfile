# catgad: the daemon, the example config and its plugin, run as a non-root user.
# Debian slim, not Alpine: the CEL libraries publish no musl wheels.
# Build: docker build -t catgad .   Run and deploy: docs/operations.md.
# The install steps are docker/install.sh, which CI also runs outside Docker.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY catgad catgad
COPY bench bench
COPY plugins/catgad_example_plugin plugins/catgad_example_plugin
COPY config/examples config/examples
COPY docker docker
RUN sh docker/install.sh /src /opt/catgad /usr/share/catgad /etc/catgad

FROM python:3.11-slim-bookworm
# Graphviz's dot draws the SVG diagrams (/processes/{name}/diagram?format=svg).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends graphviz \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 catgad \
    && useradd --system --uid 10001 --gid catgad --home-dir /var/lib/catgad --create-home catgad
COPY --from=build /opt/catgad /opt/catgad
COPY --from=build /usr/share/catgad /usr/share/catgad
COPY --from=build /etc/catgad /etc/catgad

# The example's files go to the data volume; its Redis read model stays off (no server here).
ENV PATH=/opt/catgad/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CATGAD_SQLITE_PATH=/var/lib/catgad/orders.db \
    CATGAD_READ_SQLITE_PATH=/var/lib/catgad/orders-read.db \
    CATGAD_REDIS_PROJECTIONS=false

USER 10001:10001
WORKDIR /var/lib/catgad
VOLUME ["/var/lib/catgad"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/catgad/bin/python", "/usr/share/catgad/healthcheck.py"]

# Every address of the container, port 8080; the config is mounted at /etc/catgad/catgad.yaml.
ENTRYPOINT ["catgad", "run", "--listen", "0.0.0.0:8080"]
CMD ["/etc/catgad/catgad.yaml"]
