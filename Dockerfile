# colorize on Ray's official image: the project installed from the wheel of this tree, at a
# pinned version, with the image's own Ray kept as it is. The image that cluster.yaml and the
# KubeRay manifests in deploy/kubernetes/ run.
#
#   docker build -t colorize:0.1.0 .                                         # CPU nodes
#   docker build -t colorize:0.1.0-gpu --build-arg PLATFORM=gpu --build-arg EXTRAS=[gpu] .
#   docker tag colorize:0.1.0 REGISTRY/colorize:0.1.0 && docker push REGISTRY/colorize:0.1.0
#
# RAY_VERSION and COLORIZE_VERSION must stay what the manifests, cluster.yaml, pyproject.toml
# and the Ray the project is tested with say: tests/test_dockerfile.py checks them, lints this
# file (hadolint where installed) and builds the wheel from the build context .dockerignore
# leaves, offline.

ARG RAY_VERSION=2.60.0
ARG PYTHON=py311
ARG PLATFORM=cpu

# Stage 1: the wheel, built from the source tree alone (the build context: .dockerignore).
FROM rayproject/ray:${RAY_VERSION}-${PYTHON}-cpu AS wheel
WORKDIR /home/ray/src
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users colorize/ colorize/
COPY --chown=ray:users tune/ tune/
COPY --chown=ray:users serve/ serve/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /home/ray/dist .

# Stage 2: Ray's image (PLATFORM cpu, or gpu for CUDA) with that wheel installed; EXTRAS=[gpu]
# adds TensorFlow's CUDA libraries. Ray is held at the image's version (the constraint), so
# the project's dependencies never move it.
FROM rayproject/ray:${RAY_VERSION}-${PYTHON}-${PLATFORM}
ARG RAY_VERSION
ARG COLORIZE_VERSION=0.1.0
ARG EXTRAS=
LABEL org.opencontainers.image.title="colorize" \
      org.opencontainers.image.version="${COLORIZE_VERSION}" \
      org.opencontainers.image.description="Automatic image colorization on Ray ${RAY_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=wheel --chown=ray:users /home/ray/dist/ /tmp/dist/
RUN echo "ray==${RAY_VERSION}" > /tmp/ray-constraint.txt \
    && pip install --no-cache-dir --constraint /tmp/ray-constraint.txt \
       "/tmp/dist/colorize-${COLORIZE_VERSION}-py3-none-any.whl${EXTRAS}" \
    && python -c "import importlib.metadata as m, sys; v = (m.version('ray'), m.version('colorize')); sys.exit(0 if v == ('${RAY_VERSION}', '${COLORIZE_VERSION}') else f'installed ray, colorize {v}')" \
    && rm -rf /tmp/dist /tmp/ray-constraint.txt
# TensorFlow's start-up chatter off; Serve's gRPC data plane between proxy and replicas
# (fewer CPU ms a request, docs/experiments.md), which `colorize serve` sets for a local Ray.
ENV TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1 \
    RAY_SERVE_USE_GRPC_BY_DEFAULT=1
WORKDIR /home/ray
