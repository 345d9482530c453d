# Salt: upgrade the Percona server packages on one minion of a cluster at a time, on
# RHEL-family (yum, or dnf: RHEL/CentOS/Rocky/Alma, Fedora) and Debian-family minions alike.
#
# The lock is taken in one state (distlock --lock) and given back in another (--unlock) once
# the change is done, so it covers the package upgrade and the restart that follows it:
#
#   1. distlock-take-percona runs only when an upgrade is pending (onlyif), and waits in the
#      lock's queue (up to 30 minutes) while another minion upgrades.
#   2. percona-upgrade upgrades the package, and percona-service restarts the server on it.
#   3. distlock-release-percona runs only when step 1 ran (onchanges), and only when steps 1
#      and 2 succeeded (require: Salt does not run a state whose requisite failed).
#
# If the upgrade fails, the lock stays held on purpose: no other minion starts its own upgrade
# until a person has looked. `distlock --lock-name=percona_prod --status` shows who holds it and
# why; `distlock --lock-name=percona_prod --unlock` (from any node) gives it back.
#
# Apply it to the whole cluster at once (salt 'db*' state.apply percona-upgrade): the lock, not
# Salt's batching, keeps the upgrades one at a time. distlock reads the etcd endpoints from
# /etc/distlock/distlock.yaml (or DISTLOCK_ENDPOINTS).
#
# distlock comes from the minion's package repository, where the release's .rpm or .deb was
# published (see "Install" in the README); without one, serve the package file from the master:
#     - sources:
#       - distlock: salt://packages/distlock-0.1.0-1.x86_64.rpm

{#- Percona's packages name the service mysqld on RHEL-family hosts, mysql on Debian's. #}
{%- set redhat = grains['os_family'] == 'RedHat' %}

distlock-package:
  pkg.installed:
    - name: distlock

distlock-take-percona:
  cmd.run:
    - name: >-
        distlock --lock-name=percona_prod --lock --timeout=30m
        --reason="Salt: upgrade percona-server-server on {{ grains['id'] }}"
    # Only when there is something to upgrade: yum and dnf check-update exit 100 then (yum is
    # dnf on RHEL 8 and later); apt-get -s simulates and needs no lock.
{%- if redhat %}
    - onlyif: yum -q check-update percona-server-server >/dev/null; test $? -eq 100
{%- else %}
    - onlyif: apt-get -s -o Debug::NoLocking=1 install --only-upgrade percona-server-server | grep -q '^Inst '
{%- endif %}
    - timeout: 1900
    - require:
      - pkg: distlock-package

percona-upgrade:
  pkg.latest:
    - name: percona-server-server
    - require:
      - cmd: distlock-take-percona

percona-service:
  service.running:
    - name: {{ 'mysqld' if redhat else 'mysql' }}
    - enable: True
    - watch:
      - pkg: percona-upgrade

distlock-release-percona:
  cmd.run:
    - name: distlock --lock-name=percona_prod --unlock
    - onchanges:
      - cmd: distlock-take-percona
    - require:
      - pkg: percona-upgrade
      - service: percona-service
