# syntax=docker/dockerfile:1
# One image with every katib-py console script: katib, katib-controller, katib-suggestion,
# katib-earlystopping, katib-db-manager, katib-metrics-collector, katib-bench. The Kubernetes
# manifests pick the program with `command:`; trial pods can use it too (it carries
# scikit-learn and examples/ for the digits example in examples/kubernetes/).
#
#   docker build -t ghcr.io/katib-py/katib:latest .
#   docker build --target earlystopping -t ghcr.io/katib-py/katib-earlystopping:latest .
#   docker build --build-arg NAS=1 -t ghcr.io/katib-py/katib-nas:latest .   # + torch (CPU)
#
# The `earlystopping` target is the same image with `katib-earlystopping` as its default
# command, for Katib's own controller, which starts early-stopping containers without a command
# (manifests/overlays/katib-controller).

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
# NAS=1 adds torch for the enas and darts services and their trial programs.
ARG NAS=0
# Where the CPU-only torch wheels live (the default index's wheels pull in CUDA).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/katib/venv
ENV PATH=/opt/katib/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN set -eu; \
    extras="kube,postgres,mysql,examples"; \
    if [ "$NAS" = "1" ]; then \
        pip install --extra-index-url "$TORCH_INDEX_URL" ".[$extras,nas]"; \
    else \
        pip install ".[$extras]"; \
    fi; \
    katib --help >/dev/null

FROM python:${PYTHON_VERSION}-slim AS runtime
RUN groupadd --gid 1000 katib \
    && useradd --uid 1000 --gid 1000 --home-dir /home/katib --create-home \
        --shell /usr/sbin/nologin katib
COPY --from=build /opt/katib/venv /opt/katib/venv
COPY examples /opt/katib/examples
# Caches go to /tmp: the manifests mount an emptyDir there and make the root file system
# read-only.
ENV PATH=/opt/katib/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /home/katib
# Numeric, so that Kubernetes can check runAsNonRoot without a user database.
USER 1000:1000

FROM runtime AS earlystopping
EXPOSE 6788
CMD ["katib-earlystopping", "--port", "6788"]

# The default target (last stage): every program, `katib --help` when run bare.
FROM runtime AS katib
EXPOSE 6789 6788 8081
CMD ["katib", "--help"]
