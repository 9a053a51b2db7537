# dirac-deploy model server: Open Inference Protocol (KServe v2), HTTP on port 8000 and gRPC on 8001.
#
#   full image (default target): serves .onnx, plain.pth and checkpoints; BAKE_CHECKPOINT exports at build
#     podman build --format docker -t dirac-deploy .
#   slim image: serves exported .onnx only, without torch
#     podman build --format docker --target slim -t dirac-deploy:slim .
#   run (a directory of models mounted read-only at /models)
#     podman run -p 8000:8000 -p 8001:8001 -v "$PWD/models:/models:ro" dirac-deploy:slim
#
# Build arguments:
#   PYTHON_IMAGE     a Python 3.11 base: the official python:3.11-slim-bookworm, or a local Debian base
#                    with python3 and python3-venv (`make image-test` makes one with debootstrap)
#   TORCH_INDEX_URL  where the CPU torch wheel comes from (PyTorch's CPU index); empty: pip's own
#                    configuration (PIP_INDEX_URL / PIP_FIND_LINKS build arguments, e.g. a wheel directory
#                    mounted into the build)
#   TORCH_SPEC       the torch requirement (torch==2.13.0; torch==2.13.0+cpu picks a local CPU wheel over
#                    PyPI's CUDA build of the same release)
#   BAKE_CHECKPOINT  a file in docker/bake/ to fold, verify and export to /models at build time (full image)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS source
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY docker/slim_requirements.py ./docker/
COPY dirac_deploy ./dirac_deploy

FROM source AS build-slim
# The host's pip settings, when passed as build arguments (pip reads them from the environment; unset if
# not). Build arguments do not pass from one stage to the next, so each stage that runs pip declares them.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT
# The package without its dependencies, then only what serving an .onnx imports: no torch, no exporter.
RUN python3 docker/slim_requirements.py > /tmp/requirements.txt \
    && pip install -c constraints.txt --no-deps . \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && python3 -c "import importlib.util as u; assert u.find_spec('torch') is None, 'torch in the slim image'"

FROM source AS build-full
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC=torch==2.13.0
# CPU-only torch: PyPI's default wheel pulls several GB of CUDA libraries. (The version is pinned in TORCH_SPEC.)
# hadolint ignore=DL3013
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"; \
    else pip install "$TORCH_SPEC"; fi \
    && python3 -c "import torch; assert torch.version.cuda is None, 'a CUDA build of torch'" \
    && pip install -c constraints.txt ".[export,serve]"
ARG BAKE_CHECKPOINT=""
COPY docker/bake/ /bake/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN mkdir -p /models && if [ -n "$BAKE_CHECKPOINT" ]; then \
      dirac-deploy export "/bake/$BAKE_CHECKPOINT" --onnx "/models/${BAKE_CHECKPOINT%%.*}.onnx"; \
    fi

FROM ${PYTHON_IMAGE} AS slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
COPY --from=build-slim /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
ENTRYPOINT ["dirac-deploy", "serve"]
CMD ["/models", "--host", "0.0.0.0", "--port", "8000", "--grpc-port", "8001"]

FROM ${PYTHON_IMAGE} AS full
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
COPY --from=build-full /opt/venv /opt/venv
COPY --from=build-full --chown=10001:10001 /models /models
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
ENTRYPOINT ["dirac-deploy", "serve"]
CMD ["/models", "--host", "0.0.0.0", "--port", "8000", "--grpc-port", "8001"]
