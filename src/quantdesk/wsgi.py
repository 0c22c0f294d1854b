"""The WSGI entry point for gunicorn: `gunicorn -c deploy/gunicorn.conf.py quantdesk.wsgi:app`.

Building the app here, at import, is the point of this module (each gunicorn worker imports it);
nothing else in the package does work at import time. Run `quantdesk init-db` before starting.
"""

from quantdesk.app import create_app

app = create_app()
