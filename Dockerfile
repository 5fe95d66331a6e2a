# The worker image of docker-compose.yml. No Docker engine runs in CI: it is checked
# statically there (tests/integration/test_compose.py), never built.
#
# Two stages: `build` installs the project's wheel and its dependencies into a venv (every
# dependency has a binary wheel for CPython 3.11 on x86_64 glibc, so no compiler is
# needed); the runtime stage is a clean slim image with that venv copied in, run as a
# user that owns DATA_DIR and nothing else.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# The dependencies first, read from pyproject.toml: this layer is rebuilt only when they
# change, not on every change of the sources.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && /opt/venv/bin/pip install -r requirements.txt
# Then the project, as the wheel pip builds from pyproject.toml (its package list decides
# what ships; .dockerignore keeps the venv, tests, caches and .env out of the context).
COPY . .
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/orderstream-*.whl

FROM python:3.11-slim-bookworm
# A numeric USER: Kubernetes' runAsNonRoot can check it, a name it cannot.
RUN groupadd --system --gid 10001 orderstream \
    && useradd --system --uid 10001 --gid 10001 --create-home orderstream \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
# API_HOST: other containers and the published port reach the API. DATA_DIR: the volume
# (docker-compose.yml gives each worker its own folder in it).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    DATA_DIR=/data
# The code is in the venv; settings come from the environment (no .env here, and
# .dockerignore keeps one out of the build); the worker writes only under DATA_DIR.
WORKDIR /home/orderstream
USER 10001:10001
VOLUME /data
EXPOSE 8000
CMD ["faust", "-A", "app", "worker", "-l", "info"]
