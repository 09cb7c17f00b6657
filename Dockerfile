# One image for every driftgate role: `driftgate runtime`, `driftgate gateway` and
# `driftgate jobs` (docs/deploy.md). Build it from the repository root:
#
#   docker build -t driftgate .
#
# The build context is an allowlist (.dockerignore). tests/deploy/test_dockerfile.py checks
# that every COPY below is in the context and that the project builds from what it copies.

# --- Stage 1: driftgate as a wheel. setuptools is needed here only. ---------------------
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY driftgate driftgate
COPY gateway gateway
COPY runtime runtime
COPY monitoring monitoring
COPY drift drift
COPY explain explain
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- Stage 2: the image. ------------------------------------------------------------------
FROM python:3.11-slim-bookworm

# PMML models are scored by pypmml on a JVM: runtime/backends/pmml.py looks `java` up on
# PATH and starts it in-process through JPype.
RUN apt-get update \
    && apt-get install -y --no-install-recommends default-jre-headless \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The extras every role needs: the runtime's backends. `all` and `dev` (demo builders,
# pytest, ruff, mypy) stay out of the image.
ARG EXTRAS=onnx,tensorflow,pmml

# Third-party packages first, in a layer of their own, so that a change to driftgate's
# code does not reinstall TensorFlow. The versions are those of constraints.txt: what the
# tests passed with (Linux x86_64, Python 3.11).
COPY pyproject.toml constraints.txt /tmp/install/
RUN cd /tmp/install \
    && python -c 'import os, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + [r for e in os.environ["EXTRAS"].split(",") for r in p["optional-dependencies"][e]]))' > requirements.txt \
    && pip install --constraint constraints.txt --requirement requirements.txt

# Then driftgate itself, offline: everything it depends on is already installed.
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-index --find-links /tmp/wheels \
        --constraint /tmp/install/constraints.txt "driftgate[${EXTRAS}]" \
    && rm -rf /tmp/wheels /tmp/install

# A numeric user, so that Kubernetes' runAsNonRoot can check it (deploy/ runs as 10001).
RUN groupadd --system --gid 10001 driftgate \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/driftgate driftgate
USER 10001:10001
WORKDIR /home/driftgate

ENTRYPOINT ["driftgate"]
CMD ["--help"]
