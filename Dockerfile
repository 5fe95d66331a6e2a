# The worker image used by docker-compose.yml (not built in CI: no Docker engine there).
FROM python:3.11-slim
WORKDIR /srv/orderstream
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
COPY api ./api
COPY core ./core
RUN pip install --no-cache-dir .
ENV API_HOST=0.0.0.0 DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["faust", "-A", "app", "worker", "-l", "info"]
