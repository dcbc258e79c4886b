#!/bin/sh
# One image, several roles. The first argument picks the role:
#   api      gunicorn serving the Flask app (default)
#   worker   an RQ worker (rewards worker; outlives Redis outages)
#   cron     the RQ cron scheduler, schedules in workers/cron.py (rewards cron)
#   migrate  apply database migrations, then exit
#   demo     migrate, then load the demo scheme (skipped if already loaded)
# Anything else is executed as given, e.g. `docker run IMAGE rewards create-staff ...`.
set -e

if [ "$#" -eq 0 ]; then
    set -- api
fi

role=$1
case "$role" in
    api)
        shift
        # Prometheus multiprocess mode: the workers' metric files from a previous run
        # would be added to this one's, so start from an empty directory.
        if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
            mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
            find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -type f -delete
        fi
        exec gunicorn --config python:rewards.gunicorn_conf --bind "0.0.0.0:${PORT:-8000}" \
            --workers "${WEB_CONCURRENCY:-4}" --access-logfile - "$@" "rewards:create_app()"
        ;;
    worker)
        shift
        exec rewards worker "$@"
        ;;
    cron)
        shift
        : "${REDIS_URL:?REDIS_URL must be set for the cron role}"
        exec rewards cron "$@"
        ;;
    migrate)
        shift
        exec rewards db upgrade "$@"
        ;;
    demo)
        shift
        rewards db upgrade
        exec rewards demo "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
