# User-code image for the choosemypower_dagster code location (Dagster Helm chart + dagster-k8s).
# The same image serves the code location over gRPC and runs every K8sRunLauncher job.
#   docker build -t ghcr.io/choosemypower/choosemypower-dagster:<git-sha> .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

WORKDIR /opt/dagster/app

# dagster-k8s lets run workers talk to the K8sRunLauncher; psycopg2-binary (a dependency)
# needs no compiler. Metadata first, so the dependency layer is cached across code changes.
COPY pyproject.toml README.md ./
COPY choosemypower_dagster ./choosemypower_dagster
RUN pip install . "dagster-k8s>=0.29,<0.30" \
    && mkdir -p "$DAGSTER_HOME" \
    && useradd --create-home --uid 10001 dagster \
    && chown -R dagster "$DAGSTER_HOME"

USER dagster
EXPOSE 3030

# The Helm chart passes its own `dagster api grpc` arguments (deploy/helm/values.yaml);
# this default lets the image run the code server on its own too.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "choosemypower_dagster.definitions", "--location-name", "choosemypower_dagster"]
