#!/bin/sh
# wait-stage.sh SERVICE N: wait until stage N of SERVICE's rollout is done
# (the rollout moved past it, waits at the next gate, or is promoted).
# Exit 1 as soon as the rollout was rolled back, failed or aborted, with its
# reason; the daemons have already put the traffic back on stable.
set -eu
service=$1 stage=$2 timeout=${WAIT_TIMEOUT:-7200}
deadline=$(( $(date +%s) + timeout ))
while :; do
    doc=$(meshd deploy status "$service" --json)
    verdict=$(printf '%s' "$doc" | python3 -c '
import json, sys
r = json.load(sys.stdin)[0]
stage = int(sys.argv[1])
if r["state"] in ("rolled_back", "failed", "aborted"):
    print("stop " + r["state"] + ": " + r["reason"])
elif r["state"] == "promoted" or r["stage"] + 1 > stage:
    print("done")
else:
    print("wait")
' "$stage")
    case $verdict in
        done) exit 0 ;;
        stop*) echo "$service: ${verdict#stop }" >&2; exit 1 ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "$service: stage $stage not done after ${timeout}s" >&2
        exit 1
    fi
    sleep 10
done
