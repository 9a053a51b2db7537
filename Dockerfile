# dirac-deploy model server: Open Inference Protocol (KServe v2) over HTTP on port 8000 and gRPC on 8001.
#   docker build -t dirac-deploy .
#   docker run -p 8000:8000 -p 8001:8001 -v "$PWD/models:/models:ro" dirac-deploy
# Models are read from /models (mount a directory of .onnx / plain.pth / checkpoints), or baked in at build
# time: put a checkpoint in docker/bake/ and add --build-arg BAKE_CHECKPOINT=<file name>.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
WORKDIR /src
# CPU-only torch from PyTorch's CPU index: the default PyPI wheel pulls several GB of CUDA libraries.
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md constraints.txt ./
COPY dirac_deploy ./dirac_deploy
RUN pip install --no-cache-dir -c constraints.txt ".[serve]"
ARG BAKE_CHECKPOINT=""
COPY docker/bake/ /bake/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN mkdir -p /models && if [ -n "$BAKE_CHECKPOINT" ]; then \
      dirac-deploy export "/bake/$BAKE_CHECKPOINT" --onnx "/models/${BAKE_CHECKPOINT%%.*}.onnx"; \
    fi

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=10001:10001 /models /models
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
ENTRYPOINT ["dirac-deploy", "serve"]
CMD ["/models", "--host", "0.0.0.0", "--port", "8000", "--grpc-port", "8001"]
