#!/usr/bin/env bash
# Rolling upgrade: upgrade a cluster one node at a time, from an administration host.
#
# Usage: rolling-upgrade.sh HOST...
#   LOCK     lock name (default percona_prod: the lock percona-upgrade.pp/.sls use too)
#   UPGRADE  shell command run on each node (default: upgrade the package, with yum (dnf) on
#            RHEL-family nodes and apt-get on Debian-family ones, restart the server, wait
#            until it answers)
#   SSH      how to reach a node (default: ssh -o BatchMode=yes)
#
# Each node runs its upgrade under the cluster's lock, so this loop, a Puppet or Salt run that
# uses the same lock, and a colleague running this script at the same time never upgrade two
# nodes at once: whoever comes second waits in the lock's queue (up to --timeout).
# The loop stops at the first node whose upgrade fails (distlock passes on the command's exit
# status; the lock itself is released, as always in run mode).
set -euo pipefail

LOCK=${LOCK:-percona_prod}
UPGRADE=${UPGRADE:-'if command -v yum >/dev/null; then yum -y upgrade percona-server-server && systemctl restart mysqld; else apt-get -y install --only-upgrade percona-server-server && systemctl restart mysql; fi && mysqladmin --wait=30 ping'}
read -r -a SSH <<<"${SSH:-ssh -o BatchMode=yes}"

if (($# == 0)); then
    echo "usage: ${0##*/} HOST..." >&2
    exit 2
fi

done_hosts=()
for host in "$@"; do
    echo "==> $host: waiting for lock $LOCK, then upgrading" >&2
    # distlock runs its command without a shell: `sh -c` gives UPGRADE one on the node.
    # ssh joins its words into one string for the remote shell: quote each one for it.
    remote=$(printf '%q ' distlock --lock-name="$LOCK" --timeout=30m \
        --reason="rolling upgrade of $host by ${USER:-unknown}" -- sh -c "$UPGRADE")
    status=0
    "${SSH[@]}" "$host" "$remote" || status=$?
    if ((status != 0)); then
        echo "rolling-upgrade: $host failed (exit $status); stopping." >&2
        echo "  upgraded: ${done_hosts[*]:-none}" >&2
        echo "  not upgraded: ${*:${#done_hosts[@]}+1}" >&2
        exit 1
    fi
    done_hosts+=("$host")
done
echo "rolling-upgrade: all ${#done_hosts[@]} hosts upgraded: ${done_hosts[*]}" >&2
