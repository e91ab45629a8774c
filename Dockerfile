# Kizuna: a slim, non-root image. Default command: `kizuna serve` (set REDIS_URL and run
# `kizuna worker` in other containers for production mode; see compose.yaml).
# Not built on the development machines (no Docker engine there): checked by reading.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kizuna ./kizuna
RUN python -m venv /opt/kizuna \
 && /opt/kizuna/bin/pip install --upgrade pip \
 && /opt/kizuna/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/kizuna/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080
RUN groupadd --system kizuna && useradd --system --gid kizuna --home-dir /app --create-home kizuna
COPY --from=build /opt/kizuna /opt/kizuna
WORKDIR /app
USER kizuna
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"
CMD ["kizuna", "serve"]
