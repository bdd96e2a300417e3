#!/bin/sh
# `make run`: starts kvzd in the background with its embedded store, creates
# and starts a demo container (busybox, serving a page over HTTP on a
# bridge), and prints how to reach both. kvzd keeps running after this
# script ends; `scripts/run-demo.sh stop` stops kvzd (guests keep running,
# as they do whenever kvzd stops) and `scripts/run-demo.sh clean` also
# destroys the demo container.
#
# Environment: BUILD (build directory, default build), KVZ_STATE_DIR
# (/var/lib/kvz), KVZ_SOCKET (/run/kvz/kvzd.sock), KVZ_RUN_DIR (/run/kvz),
# KVZ_DEMO_IP (10.10.0.11/24, bridge kvzbr0 with 10.10.0.1 on the host),
# KVZ_UI_LISTEN (127.0.0.1:8443: the web UI over HTTPS with a self-signed
# certificate; 0.0.0.0:8443 to reach it from other machines).
set -eu

BUILD=${BUILD:-build}
STATE=${KVZ_STATE_DIR:-/var/lib/kvz}
RUN=${KVZ_RUN_DIR:-/run/kvz}
SOCK=${KVZ_SOCKET:-$RUN/kvzd.sock}
DEMO_IP=${KVZ_DEMO_IP:-10.10.0.11/24}
DEMO_GW=${KVZ_DEMO_GW:-10.10.0.1}
KVZD=$BUILD/src/daemon/kvzd
KVZ=$BUILD/src/cli/kvz
PIDFILE=$RUN/kvzd.pid
LOG=$STATE/kvzd.log
UI_LISTEN=${KVZ_UI_LISTEN:-127.0.0.1:8443}
UI_TOKEN=$STATE/ui-token
export KVZ_SOCKET="$SOCK"

die() { echo "run-demo: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (containers need namespaces and cgroups)"
for b in "$KVZD" "$KVZ" "$BUILD/src/ct/kvz-ct"; do
	[ -x "$b" ] || die "$b is not built (run make first)"
done

kvzd_running() { "$KVZ" host >/dev/null 2>&1; }

stop_kvzd() {
	if [ -f "$PIDFILE" ] && kill "$(cat "$PIDFILE")" 2>/dev/null; then
		i=0
		while kvzd_running && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		echo "kvzd stopped (guests keep running; start kvzd again to manage them)"
	else
		echo "kvzd is not running from $PIDFILE"
	fi
	rm -f "$PIDFILE"
}

case "${1:-start}" in
stop)
	stop_kvzd
	exit 0 ;;
clean)
	if kvzd_running; then "$KVZ" destroy demo --force 2>/dev/null || true; fi
	stop_kvzd
	exit 0 ;;
start) ;;
*) die "usage: run-demo.sh [start|stop|clean]" ;;
esac

mkdir -p "$STATE" "$RUN"
# The token of the TCP listener (web UI and API), made once, 0600.
if [ ! -s "$UI_TOKEN" ]; then
	(umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$UI_TOKEN")
fi
if kvzd_running; then
	echo "kvzd already answers on $SOCK"
else
	# setsid: kvzd outlives this script and the terminal it ran in.
	# Without kvz-vmm built, kvzd still runs containers.
	set -- --ct "$BUILD/src/ct/kvz-ct"
	[ -x "$BUILD/src/vmm/kvz-vmm" ] && set -- "$@" --vmm "$BUILD/src/vmm/kvz-vmm"
	set -- "$@" --listen "$UI_LISTEN" --token-file "$UI_TOKEN" --tls
	setsid "$KVZD" --state-dir "$STATE" --run-dir "$RUN" --socket "$SOCK" "$@" \
		</dev/null >>"$LOG" 2>&1 &
	echo $! >"$PIDFILE"
	i=0
	until kvzd_running; do
		i=$((i + 1))
		[ $i -lt 100 ] || die "kvzd did not start; see $LOG: $(tail -n 1 "$LOG")"
		sleep 0.1
	done
	echo "kvzd started (pid $(cat "$PIDFILE"), state in $STATE, log $LOG)"
fi

if ! "$KVZ" show demo >/dev/null 2>&1; then
	# shellcheck disable=SC2016 # $(hostname) is for the container's shell
	"$KVZ" create ct demo --template busybox --memory 64M:128M --cpus 0.5 --disk 256M \
		--ip "$DEMO_IP" --gw "$DEMO_GW" -- /bin/sh -c \
		'mkdir -p /www && echo "hello from the kvz demo container $(hostname)" >/www/index.html && exec httpd -f -p 80 -h /www'
fi
state=$("$KVZ" --json show demo | sed -n 's/^  "state": "\(.*\)",$/\1/p')
[ "$state" = running ] || "$KVZ" start demo

echo
"$KVZ" list
cat <<EOT

kvzd is running in the background and answers on $SOCK.
  export KVZ_SOCKET=$SOCK    # then, with $KVZ:
  kvz list | kvz top | kvz stats demo | kvz events
  kvz exec demo -- ps        # a command inside the demo container
  kvz console demo           # its console (detach with Ctrl-])
  wget -qO- http://${DEMO_IP%/*}/      # the page the container serves
  curl --unix-socket $SOCK http://kvzd/v1/guests   # the REST API (docs/api.md)
  curl --unix-socket $SOCK http://kvzd/metrics     # Prometheus metrics
Web UI: https://$UI_LISTEN/  (a self-signed certificate, made in $STATE/tls/;
  log in with the token in $UI_TOKEN: cat $UI_TOKEN)
Stop kvzd: scripts/run-demo.sh stop   (guests keep running)
Remove the demo too: scripts/run-demo.sh clean
EOT
