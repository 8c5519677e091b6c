"""gunicorn's settings in production (`gunicorn -c config/gunicorn.conf.py config.wsgi:application`).

gthread workers: a request waiting on a provider (up to PROVIDER_READ_TIMEOUT) holds one thread, not a
whole worker, so the other requests, /healthz among them, are still served. Each thread keeps its own
database connection (DB_CONN_MAX_AGE), so the database must allow WEB_CONCURRENCY x GUNICORN_THREADS.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Above the slowest request we make (a provider call times out after PROVIDER_READ_TIMEOUT).
timeout = 30
graceful_timeout = 10
