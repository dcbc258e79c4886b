# One image for every role: api (default), worker, cron, migrate, demo.
# See docker-entrypoint.sh and docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, so code changes do not reinstall them: the
# exact versions in requirements.lock (`make lock` writes it from pyproject.toml).
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./

COPY rewards/ rewards/
COPY workers/ workers/
COPY migrations/ migrations/
COPY alembic.ini docker-entrypoint.sh ./

# Editable on purpose: `rewards db upgrade` finds migrations/ next to the package.
# --no-deps: everything it needs came from the lock above.
RUN pip install --no-cache-dir --no-deps -e . \
    && pip check \
    && chmod 0755 /app/docker-entrypoint.sh \
    && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin rewards \
    && mkdir -p /app/instance \
    && chown rewards:rewards /app/instance

USER rewards

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)" || exit 1

ENTRYPOINT ["/app/docker-entrypoint.sh"]
CMD ["api"]
