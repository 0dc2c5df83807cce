# The sync server on PostgreSQL; see docker-compose.yml for the full stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY sync_server ./sync_server
COPY clients/python/touchline_client ./clients/python/touchline_client
COPY clients/python/touchline_import ./clients/python/touchline_import
COPY clients/viewer/touchline_viewer ./clients/viewer/touchline_viewer
RUN pip install . \
    && useradd --create-home --uid 10001 touchline

USER touchline
EXPOSE 8000
# Migrations are idempotent and serialised by an advisory lock, so every instance may run them.
CMD ["sh", "-c", "sync-server migrate && exec sync-server serve --host 0.0.0.0"]
