#!/bin/sh
# The web UI's dashboard with 50 guests: load time, kvzd's CPU with the
# dashboard open against a polling client, bundle size (web_dashboard.py).
exec /usr/bin/python3 "$(dirname "$0")/web_dashboard.py" "$@"
