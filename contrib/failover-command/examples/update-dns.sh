#!/bin/sh
# An example failover command: read the decision from stdin and point a DNS
# name at the target region. Replace the nsupdate call with your provider's
# CLI. It must be idempotent: every region's daemon runs it.
set -eu
decision=$(cat)
region=$(printf '%s' "$decision" | python3 -c 'import json,sys; print(json.load(sys.stdin)["region"])')
target=$(printf '%s' "$decision" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["target"] or "")')
if [ -z "$target" ]; then
    echo "no eligible target for $region: leaving DNS as it is" >&2
    exit 0
fi
echo "would point api-$region.example.com at api-$target.example.com (MESHD_ACTION=$MESHD_ACTION)" >&2
# printf 'update delete api-%s.example.com CNAME\nupdate add api-%s.example.com 60 CNAME api-%s.example.com\nsend\n' \
#     "$region" "$region" "$target" | nsupdate -k /etc/meshd/dns.key
