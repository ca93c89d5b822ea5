#!/bin/sh
# The kernel matrix guest's /init: a Debian kernel, busybox, and the real
# socktrace and test binaries at the paths they have on the host. Runs
# every test binary named in /tests.list, then powers off. The host reads
# the serial console (this script's output) for the "socktrace-guest:" lines.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
# Not over /tmp: the binaries are at their host paths, which may be under
# /tmp (a clone there); the initramfs's own root is writable.
mount -t tmpfs tmpfs /run
mkdir -p /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# sock_diag and veth are modules in Debian's cloud kernels; in this order.
while read -r module; do
    insmod "/modules/$module.ko" || echo "socktrace-guest: insmod $module failed"
done < /modules.list
ip link set lo up
# As much as a host's root has: tests hold 16k sockets in one process.
ulimit -n 65536
. /tests.env
echo "socktrace-guest: kernel $(cat /proc/sys/kernel/osrelease)"
# What socktrace says of this kernel, once, for the log.
"$SOCKTRACE_BIN" --duration 1 > /dev/null 2> /tmp/said
grep -e "degraded:" -e "refused" -e "attached in" /tmp/said | sed "s/^/socktrace-guest: said: /"
# What `socktrace --json` shows of a refused connect and of a loopback
# connection, for the log and the README (the tests assert such events).
# Waits up to a minute for text $1 in file $2.
wait_for() {
    tries=0
    until grep -q "$1" "$2" || [ $tries -ge 300 ]; do
        sleep 0.2
        tries=$((tries + 1))
    done
}
"$SOCKTRACE_BIN" --json > /tmp/demo.json 2> /tmp/demo.err &
tracer=$!
wait_for "attached in" /tmp/demo.err
"$SOCKOPS_BIN" connect 127.0.0.1 9 > /dev/null
timeout 120 "$SOCKOPS_BIN" tcp-server 127.0.0.1 5 5 wait > /tmp/server &
server=$!
wait_for port /tmp/server
port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' /tmp/server)
timeout 120 "$SOCKOPS_BIN" tcp-client 127.0.0.1 "$port" 5 5 close > /dev/null
wait $server
sleep 2
kill -INT $tracer
wait $tracer
sed "s/^/socktrace-guest: json: /" /tmp/demo.json
failed=0
run=0
while [ $run -lt "$TIMES" ]; do
    run=$((run + 1))
    while read -r name binary; do
        echo "socktrace-guest: test $name (run $run of $TIMES)"
        # $SKIP (from /tests.env) is a list of --skip NAME arguments:
        # unquoted. $FILTER, if set, is the one test name filter.
        # One test at a time: both vCPUs run on one emulation thread, so
        # tests side by side gain little and load each other's tracers.
        if ! "$binary" --test-threads=1 $SKIP ${FILTER:+"$FILTER"} < /dev/null; then
            failed=$((failed + 1))
            echo "socktrace-guest: FAILED $name"
        fi
    done < /tests.list
done
echo "socktrace-guest: done, $failed test binaries failed"
poweroff -f
