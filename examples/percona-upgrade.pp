# Puppet: upgrade the Percona server packages on one node of a cluster at a time, on
# RHEL-family (yum, or dnf: RHEL/CentOS/Rocky/Alma, Fedora) and Debian-family hosts alike.
#
# The lock is taken in one step (distlock --lock) and given back in another (--unlock) once
# the change is done, so it covers the package upgrade and the restart that follows it:
#
#   1. Exec['distlock: take percona_prod'] runs only when an upgrade is pending (onlyif), and
#      waits in the lock's queue (up to 30 minutes) while another node upgrades.
#   2. Package[...] upgrades, which restarts the service (notify).
#   3. Exec['distlock: release percona_prod'] runs only when step 1 ran (refreshonly +
#      subscribe), and only when steps 1 and 2 succeeded (ordering: Puppet skips a resource
#      whose dependency failed).
#
# If the upgrade fails, the lock stays held on purpose: no other node starts its own upgrade
# until a person has looked. `distlock --lock-name=percona_prod --status` shows who holds it and
# why; `distlock --lock-name=percona_prod --unlock` (from any node) gives it back.
#
# distlock comes from the node's package repository, where the release's .rpm or .deb was
# published (see "Install" in the README); without one, give the package file itself:
#   package { 'distlock': ensure => installed, provider => 'rpm',
#             source => '/srv/packages/distlock-0.1.0-1.x86_64.rpm' }
# It reads the etcd endpoints from /etc/distlock/distlock.yaml (or DISTLOCK_ENDPOINTS).
class profile::percona_rolling_upgrade (
  String $lock_name = 'percona_prod',
  String $package   = 'percona-server-server',
  # Percona's packages name the service mysqld on RHEL-family hosts, mysql on Debian's.
  String $service   = $facts['os']['family'] ? {
    'RedHat' => 'mysqld',
    default  => 'mysql',
  },
) {
  $host = $facts['networking']['fqdn']

  # Whether an upgrade of the package is pending, without changing anything. yum and dnf
  # check-update exit 100 when there is one (yum is dnf on RHEL 8 and later); apt-get -s
  # simulates and needs no lock.
  $upgrade_pending = $facts['os']['family'] ? {
    'RedHat' => "yum -q check-update ${package} >/dev/null; test \$? -eq 100",
    default  => "apt-get -s -o Debug::NoLocking=1 install --only-upgrade ${package} | grep -q '^Inst '",
  }

  package { 'distlock':
    ensure => installed,
  }

  -> exec { "distlock: take ${lock_name}":
    command   => "distlock --lock-name=${lock_name} --lock --timeout=30m --reason='Puppet: upgrade ${package} on ${host}'",
    # Only when there is something to upgrade.
    onlyif    => $upgrade_pending,
    provider  => shell,
    path      => ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'],
    timeout   => 1900, # longer than distlock's --timeout, so distlock says why it gave up
    logoutput => true,
  }

  -> package { $package:
    ensure => latest,
    notify => Service[$service],
  }

  service { $service:
    ensure => running,
    enable => true,
  }

  exec { "distlock: release ${lock_name}":
    command     => "distlock --lock-name=${lock_name} --unlock",
    path        => ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'],
    refreshonly => true,
    subscribe   => Exec["distlock: take ${lock_name}"],
    require     => [Package[$package], Service[$service]],
    logoutput   => true,
  }
}
