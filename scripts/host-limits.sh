#!/usr/bin/env bash
# Raises the host limits that hundreds of sandboxes on one host reach first (as root), now and at boot
# (/etc/sysctl.d/60-sandpit.conf). Measured with `npm run bench:density`:
# - kernel.pid_max counts host threads: an idle systrap sandbox has ~25-40 (sentry, stubs, gofer), so
#   500 live ones need ~20,000 of the default 32,768 — and a fork bomb's sandbox grows to its pids.max.
# - the host keeps one neighbour (ARP) entry per sandbox's veth: past gc_thresh2 (512) the kernel
#   evicts them eagerly, past gc_thresh3 (1,024) it refuses new ones ("neighbour table overflow").
# - inotify instances: 128 per user by default, taken by watchers in sandboxes' host-side helpers.
# The server's own open files (agent connections, DNS-proxy sockets per sandbox gateway) need a nofile
# limit of some thousands: start it with `ulimit -n 65536` (systemd: LimitNOFILE=65536).
set -euo pipefail
conf=/etc/sysctl.d/60-sandpit.conf
cat >"$conf" <<'CONF'
kernel.pid_max = 4194304
kernel.threads-max = 4194304
net.ipv4.neigh.default.gc_thresh1 = 4096
net.ipv4.neigh.default.gc_thresh2 = 16384
net.ipv4.neigh.default.gc_thresh3 = 32768
fs.inotify.max_user_instances = 8192
fs.inotify.max_user_watches = 1048576
CONF
sysctl -q -p "$conf"
