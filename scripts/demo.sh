#!/usr/bin/env bash
# make demo: Fluid's master high-availability walk-through, on one host.
# Three nodes on 127.0.0.1-3 (config/demo.yaml), a sample dataset shaped like the seeds' hbase
# set served by a private nginx, and every step printed with what to look at.
#   scripts/demo.sh          run the demo (Ctrl-C tears everything down)
#   scripts/demo.sh stop     tear down what a previous run left (make demo-stop)
# DEMO_UFS=URL   use a real store instead of the generated dataset
# DEMO_SCALE=N   divide the seeds' 550 MiB by N for the sample (default 8: ~69 MiB)
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
BUILD=${BUILD:-build}
DEMO=/tmp/weir-demo
CONFIG=$DEMO/cluster.yaml
SCALE=${DEMO_SCALE:-8}
NGINX_ADDR=127.0.0.1:18080
bin=$top/$BUILD/services

bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
step() { echo; bold "==> $*"; }
say() { printf '    %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
weirctl() { "$bin/ctl/weirctl" --config "$CONFIG" "$@"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
elapsed() { /usr/bin/python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
# "NODE TERM" of the current leader from 'weirctl --json masters' on stdin; nothing without one
leader_term() {
        /usr/bin/python3 -c '
import json, sys
m = [x for x in json.load(sys.stdin)["masters"] if x.get("role") == "leader"]
if m: print(m[0]["node"], m[0]["term"])'
}

stop_all() {
        local quiet=${1:-}
        [ -d $DEMO ] || return 0
        [ -n "$quiet" ] || echo "demo: stopping weir and nginx, unmounting, removing $DEMO"
        if mountpoint -q $DEMO/mnt/hbase 2>/dev/null || grep -q " $DEMO/mnt/hbase " /proc/mounts; then
                fusermount3 -uz $DEMO/mnt/hbase 2>/dev/null || umount -l $DEMO/mnt/hbase 2>/dev/null
        fi
        for f in $DEMO/pids/*.pid; do
                [ -f "$f" ] && [ "$(cat "$f")" != $$ ] || continue
                kill -TERM "$(cat "$f")" 2>/dev/null
        done
        sleep 0.5
        for f in $DEMO/pids/*.pid; do # the demo script itself only gets TERM: it cleans up
                [ -f "$f" ] && [ "$(cat "$f")" != $$ ] && [ "${f##*/}" != demo.pid ] || continue
                kill -KILL "$(cat "$f")" 2>/dev/null
        done
        [ -f $DEMO/nginx/nginx.pid ] && kill -QUIT "$(cat $DEMO/nginx/nginx.pid)" 2>/dev/null
        grep -q " $DEMO/mnt/hbase " /proc/mounts && umount -l $DEMO/mnt/hbase 2>/dev/null
        rm -rf $DEMO
}

if [ "${1:-}" = stop ]; then
        stop_all
        exit 0
fi

# Start: leave nothing of an earlier run, tear down on Ctrl-C and on any exit.
stop_all quiet
trap 'echo; stop_all; exit 130' INT TERM
trap 'stop_all quiet' EXIT

[ "$(id -u)" -eq 0 ] || die "run as root: FUSE mounts and nginx on loopback need it"
step "Build"
[ -f $BUILD/build.ninja ] || meson setup $BUILD >/dev/null || die "meson setup failed"
ninja -C $BUILD >/dev/null || die "build failed: run 'ninja -C $BUILD' to see why"
say "built weir-master, weir-worker, weir-fuse and weirctl in $BUILD/"

mkdir -p $DEMO/{pids,logs,nginx,www/hbase,mnt,shm} $DEMO/node{1,2,3}/{data,run}
echo $$ >$DEMO/pids/demo.pid # so that 'make demo-stop' from another terminal ends this script too
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >$DEMO/token
chmod 600 $DEMO/token
sed "s|http://127.0.0.1:18080/hbase/|${DEMO_UFS:-http://$NGINX_ADDR/hbase/}|" config/demo.yaml >$CONFIG

if [ -z "${DEMO_UFS:-}" ]; then
        step "A sample dataset shaped like the seeds' hbase set, 1/$SCALE of its 550 MiB"
        # name and size in KiB of the six files of hbase/stable in the seeds' example
        while read -r name kib; do
                head -c $((kib * 1024 / SCALE + 1)) /dev/urandom >$DEMO/www/hbase/$name
        done <<'LIST'
hbase-2.3.5-bin.tar.gz 269312
hbase-2.3.5-client-bin.tar.gz 258048
hbase-2.3.5-src.tar.gz 36864
CHANGES.md 1126
RELEASENOTES.md 650
api_compare_2.3.4RC0_to_2.3.5RC0.html 29
LIST
        cat >$DEMO/nginx/nginx.conf <<CONF
daemon on;
pid $DEMO/nginx/nginx.pid;
error_log $DEMO/nginx/error.log;
events { worker_connections 256; }
http {
    access_log $DEMO/nginx/access.log;
    client_body_temp_path $DEMO/nginx;
    proxy_temp_path $DEMO/nginx;
    fastcgi_temp_path $DEMO/nginx;
    uwsgi_temp_path $DEMO/nginx;
    scgi_temp_path $DEMO/nginx;
    server {
        listen $NGINX_ADDR;
        root $DEMO/www;
        autoindex on;
    }
}
CONF
        nginx -c $DEMO/nginx/nginx.conf || die "nginx failed to start; see $DEMO/nginx/error.log"
        run ls -l $DEMO/www/hbase
        say "served by nginx (autoindex) at http://$NGINX_ADDR/hbase/ -- the remote store"
fi

store_bytes() { # bytes nginx has sent so far for the dataset's files
        awk '$7 ~ /^\/hbase\/./ { s += $10 } END { print s + 0 }' $DEMO/nginx/access.log 2>/dev/null
}

step "The cluster YAML: which node runs what"
run weirctl config check

step "Start three masters: Raft elects a leader"
for n in 1 2 3; do
        "$bin/master/weir-master" --config $CONFIG --node node$n >$DEMO/logs/master-node$n.log 2>&1 &
        echo $! >$DEMO/pids/master-node$n.pid
        disown # the shell must not report the kill of the failover step as a job's death
done
for _ in $(seq 100); do
        weirctl masters >/dev/null 2>&1 && weirctl masters | grep -q '^Current leader master: node' && break
        sleep 0.2
done
run weirctl masters || die "no leader; see $DEMO/logs/master-*.log"
roles=$(weirctl --json masters | /usr/bin/python3 -c '
import json, sys
print(" ".join(sorted(x.get("role", "?") for x in json.load(sys.stdin)["masters"])))')
[ "$roles" = "follower follower leader" ] || die "expected one leader and two followers, got: $roles"
say "one leader, two followers; 'Current leader master' is the node serving the cluster API"

step "The dataset before any worker runs"
for _ in $(seq 100); do
        weirctl datasets 2>/dev/null | grep -q Bound && break
        sleep 0.2
done
run weirctl datasets
weirctl --json datasets | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
d = (d["datasets"] if isinstance(d, dict) else d)[0]
sys.exit(0 if d["ufs_total_size"] > 0 and d["cached"] == 0 and d["cache_capacity"] == 0 else 1)' ||
        die "expected a known size, nothing cached and no capacity before the workers start"
say "the leader listed the store and replicated the file tree: UFS TOTAL SIZE is known,"
say "nothing is cached and there is no cache capacity yet"

step "Start two workers (node1, node2) and the FUSE mount on node1"
for n in 1 2; do
        "$bin/worker/weir-worker" --config $CONFIG --node node$n >$DEMO/logs/worker-node$n.log 2>&1 &
        echo $! >$DEMO/pids/worker-node$n.pid
        disown
done
"$bin/fuse/weir-fuse" --config $CONFIG --node node1 --dataset hbase >$DEMO/logs/fuse-node1.log 2>&1 &
echo $! >$DEMO/pids/fuse-node1.pid
disown
for _ in $(seq 150); do
        weirctl datasets 2>/dev/null | grep -q Bound && grep -q " $DEMO/mnt/hbase " /proc/mounts && break
        sleep 0.2
done
run weirctl datasets
run weirctl runtime
weirctl --json runtime | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)[0]
sys.exit(0 if r["worker_phase"] == "Ready" and r["fuse_phase"] == "Ready" else 1)' ||
        die "the workers or the FUSE mount are not ready; see $DEMO/logs/"
say "PHASE Bound: the metadata is synced from the store and workers serve"

step "The dataset as ordinary files"
run ls -l $DEMO/mnt/hbase/hbase
run du -h $DEMO/mnt/hbase/hbase

step "First copy: bytes come from the remote store into the workers' cache"
before=$(store_bytes)
t0=$(date +%s.%N)
run cp -r $DEMO/mnt/hbase/hbase $DEMO/copy1 || die "cold copy failed"
t1=$(date +%s.%N)
cold=$(/usr/bin/python3 -c "print($t1-$t0)")
say "cold copy: $(printf '%.2f' "$cold") s, store sent $(($(store_bytes) - before)) bytes"

step "Second copy with the kernel page cache dropped: bytes come from the cache"
sync; echo 3 >/proc/sys/vm/drop_caches
before=$(store_bytes)
t0=$(date +%s.%N)
run cp -r $DEMO/mnt/hbase/hbase $DEMO/copy2 || die "warm copy failed"
t1=$(date +%s.%N)
warm=$(/usr/bin/python3 -c "print($t1-$t0)")
say "warm copy: $(printf '%.2f' "$warm") s ($(/usr/bin/python3 -c "print(f'{$cold/$warm:.1f}')")x faster), store sent $(($(store_bytes) - before)) bytes"
run diff -r $DEMO/www/hbase $DEMO/copy2 && say "byte-identical to the source"
run weirctl datasets

step "Failover: SIGKILL the leader, then read through a mount that must ask a master"
say "remount first: a fresh mount knows no file, so its first lookup needs a leader"
kill -TERM "$(cat $DEMO/pids/fuse-node1.pid)"
while grep -q " $DEMO/mnt/hbase " /proc/mounts; do sleep 0.1; done
"$bin/fuse/weir-fuse" --config $CONFIG --node node1 --dataset hbase >>$DEMO/logs/fuse-node1.log 2>&1 &
echo $! >$DEMO/pids/fuse-node1.pid
disown
until grep -q " $DEMO/mnt/hbase " /proc/mounts; do sleep 0.1; done
sync; echo 3 >/proc/sys/vm/drop_caches
# leader and term before the kill, from the masters themselves
read -r leader term0 < <(weirctl --json masters | leader_term)
[ -n "$leader" ] || die "no leader before the failover step"
say "killing weir-master on $leader (leader in term $term0, pid $(cat $DEMO/pids/master-$leader.pid))"
t_kill=$(date +%s.%N)
kill -KILL "$(cat $DEMO/pids/master-$leader.pid)"
# Started after the kill, so every answer this copy gets comes from whichever master leads next.
ls $DEMO/mnt/hbase/hbase >/dev/null || die "the first lookup after the kill failed"
t_first=$(date +%s.%N)
cp -r $DEMO/mnt/hbase/hbase $DEMO/copy3 || die "the copy failed during failover"
t_done=$(date +%s.%N)
read -r new_leader term1 < <(weirctl --json masters | leader_term)
[ -n "$new_leader" ] && [ "$new_leader" != "$leader" ] ||
        die "expected a new leader other than $leader, got '${new_leader:-none}'"
[ "$term1" -gt "$term0" ] || die "the new leader's term $term1 is not above $term0"
say "the first lookup after the kill waited $(elapsed "$t_kill" "$t_first") s: the election of $new_leader (term $term0 -> $term1)"
say "the copy then finished without an error $(elapsed "$t_kill" "$t_done") s after the kill"
run diff -r $DEMO/www/hbase $DEMO/copy3 || die "the copy after the failover differs from the store"
say "and its bytes are identical to the store's"
run weirctl masters
say "$new_leader leads; $leader is unreachable. Restart it: it rejoins as a follower"
"$bin/master/weir-master" --config $CONFIG --node "$leader" >>$DEMO/logs/master-$leader.log 2>&1 &
echo $! >$DEMO/pids/master-$leader.pid
disown
# caught up: a follower in the leader's term with the leader's applied index
for _ in $(seq 100); do
        weirctl --json masters 2>/dev/null | /usr/bin/python3 -c '
import json, sys
m = json.load(sys.stdin)["masters"]
lead = [x for x in m if x.get("role") == "leader"]
me = [x for x in m if x["node"] == sys.argv[1]]
ok = lead and me and me[0].get("role") == "follower" and me[0].get("term") == lead[0].get("term") \
    and me[0].get("applied") == lead[0].get("applied")
sys.exit(0 if ok else 1)' "$leader" && { caught_up=1; break; }
        sleep 0.1
done
run weirctl masters
[ -n "${caught_up:-}" ] || die "$leader did not catch up within 10 s; see $DEMO/logs/master-$leader.log"
say "$leader is a follower again, in the leader's term, with the leader's applied index"

step "Done"
if [ -t 0 ]; then
        say "logs: $DEMO/logs/   the mount: $DEMO/mnt/hbase   try: $bin/ctl/weirctl --config $CONFIG masters"
        say "The cluster keeps running. Press Ctrl-C (or run 'make demo-stop') to stop it."
        while :; do
                sleep 3600 &
                wait $! # a wait, unlike a foreground sleep, lets the INT/TERM trap run at once
        done
else
        say "every step above checked what it printed; not on a terminal, so the cluster stops now"
fi
