# One image for every role: api (default), worker, cron, migrate, demo.
# See docker-entrypoint.sh and docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY rewards/ rewards/
COPY workers/ workers/
COPY migrations/ migrations/
COPY alembic.ini docker-entrypoint.sh ./

# Editable on purpose: `rewards db upgrade` finds migrations/ next to the package.
RUN pip install --no-cache-dir -e . \
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
