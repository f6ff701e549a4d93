# User-code image for the choosemypower_dagster code location (Dagster Helm chart + dagster-k8s).
# The same image serves the code location over gRPC and runs every K8sRunLauncher job.
#   docker build -t ghcr.io/choosemypower/choosemypower-dagster:<tag> .
# <tag> is the image tag in deploy/helm/values.yaml, never reused for other code (README,
# "Scaling out"); the Helm chart's --version is DAGSTER_VERSION below.
FROM python:3.11-slim

# Exactly the Dagster release the Helm chart is pinned to (its chart version is the Dagster
# version); the libraries (dagster-k8s, dagster-postgres) carry the matching 0.x number.
ARG DAGSTER_VERSION=1.13.27
ARG DAGSTER_LIBS_VERSION=0.29.27
# A compute log manager's package, to keep step logs past the pod (docs/production.md):
# e.g. --build-arg EXTRA_PACKAGES=dagster-aws==0.29.27 for the chart's S3ComputeLogManager.
ARG EXTRA_PACKAGES=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

WORKDIR /opt/dagster/app

# Dependencies first, from the metadata alone, so this layer is cached across code changes:
# dagster-k8s lets run workers talk to the K8sRunLauncher; psycopg2-binary needs no compiler.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
        "dagster==${DAGSTER_VERSION}" "dagster-webserver==${DAGSTER_VERSION}" \
        "dagster-postgres==${DAGSTER_LIBS_VERSION}" "dagster-k8s==${DAGSTER_LIBS_VERSION}" \
        ${EXTRA_PACKAGES} \
    && rm /tmp/requirements.txt

# Then the package itself (no dependency resolution left to do). The application directory
# stays root's and read-only to the code: everything written goes to DAGSTER_HOME (the
# image's user's) or to the export volume (CHOOSEMYPOWER_EXPORT_DIR, deploy/helm/values.yaml).
COPY choosemypower_dagster ./choosemypower_dagster
RUN pip install --no-deps . \
    && mkdir -p "$DAGSTER_HOME" \
    && useradd --create-home --uid 10001 dagster \
    && chown -R dagster "$DAGSTER_HOME"

USER 10001
EXPOSE 3030

# The Helm chart runs `dagster api grpc -h 0.0.0.0 -p <port>` with the dagsterApiGrpcArgs of
# deploy/helm/values.yaml instead; this default lets the image serve the code location alone.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "choosemypower_dagster.definitions", "--location-name", "choosemypower_dagster"]
