#!/usr/bin/env bash
# shellcheck disable=SC2015,SC2016,SC2317  # A && B || die; literal $ in generated scripts; trap-only functions
# local-cluster.sh: run an MPI program on N fake hosts built from Linux network namespaces, on this one machine.
#
#   Deploy/local-cluster.sh N [--np P] [--keep] -- CMD [ARGS...]
#
# Why: a real multi-host run exercises what a single-host run does not (TCP between hosts, one OpenMPI daemon
# per host started through the rsh/ssh launcher, per-host hostnames, no shared memory between ranks of
# different hosts), without needing a real cluster (Deploy/README.md shows how to use it).
#
# Layout (nothing is created in the root network namespace, so nothing can be left there even after a SIGKILL):
#
#   <prefix>-hub : a bridge "br0" and one veth end "hI" per host, enslaved to the bridge
#   <prefix>-hI  : the other veth end, renamed "eth0", with address <subnet>.(I+1)/24, plus loopback up
#
# The namespaces have no route to anything else: every packet stays on that bridge. The default subnet only
# exists inside those namespaces, so it cannot clash with the machine's own networks; MOE_CLUSTER_SUBNET
# overrides it anyway (a x.y.z.0/24).
#
# mpirun runs inside host 0's namespace with a hostfile of the hosts' addresses. It starts its daemons (orted)
# on the other hosts through a generated "rsh agent" that maps an address to its namespace and runs the daemon
# there (ip netns exec NS), just as ssh would on a real cluster. Every fake host also gets its own UTS namespace
# and hostname (unshare --uts): OpenMPI names its shared-memory segment files in /dev/shm after the hostname,
# and /dev/shm is shared by all namespaces, so identical hostnames make the hosts overwrite each other's
# segments and crash.
#
# Environment:
#   MOE_CLUSTER_SUBNET  x.y.z.0/24 used inside the namespaces (default 10.77.0.0/24)
#   MOE_CLUSTER_PREFIX  namespace/hostname prefix (default moe-<pid>, unique per invocation)
#   MOE_CLUSTER_DEBUG   1: print what is created, the mpirun command line and every daemon launch
#   MPIRUN_EXTRA_ARGS   extra mpirun options, split on whitespace (e.g. "--map-by node --tag-output")
#
# Requires: root (namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2 (ip), util-linux (unshare),
# OpenMPI (mpirun, orted), a kernel with network namespaces, veth and bridge support.
set -euo pipefail

prog=$(basename "$0")

usage() {
    cat <<EOF
usage: $prog N [--np P] [--keep] -- CMD [ARGS...]

Runs CMD ARGS under mpirun on N fake hosts (Linux network namespaces on this machine, one OpenMPI daemon and
one hostname each, connected by TCP through a private bridge), then removes everything it created.

  N          number of fake hosts (1-250)
  --np P     number of MPI ranks (default N); ranks are spread evenly over the hosts, rank 0 on host 0
  --keep     leave the namespaces and temp files in place afterwards (prints how to remove them)
  --help     this text

CMD may be a relative path (made absolute); the working directory of every rank is the current directory, so
relative paths in ARGS work on every fake host. Exits with mpirun's exit code; 2 for usage/environment errors.

Environment: MOE_CLUSTER_SUBNET (default 10.77.0.0/24), MOE_CLUSTER_PREFIX (default moe-<pid>),
MOE_CLUSTER_DEBUG=1, MPIRUN_EXTRA_ARGS. Forwarded to the ranks when set: SWIFT_BACKTRACE, PATH, LD_LIBRARY_PATH,
HOME, every MOE_* variable, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS.

Example:  sudo $prog 3 -- .build/release/moe-serve run --model Tests/Fixtures/tiny-mixtral --prompt-ids 1,15,27
EOF
}

die() { echo "$prog: $*" >&2; exit 2; }      # one-line refusal, exit 2 (nothing has been created yet)
debug() { [ "${MOE_CLUSTER_DEBUG:-0}" = 1 ] && echo "$prog: $*" >&2 || true; }

# ---------------------------------------------------------------------------------------------------------------
# Arguments
hosts="" np="" keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --np) [ $# -ge 2 ] && [ "${2#-}" = "$2" ] || die "--np needs a value (try --help)"; np=$2; shift 2 ;;
        --np=*) np=${1#--np=}; shift ;;
        --keep) keep=1; shift ;;
        --) shift; break ;;
        -*) die "unknown option '$1' (try --help)" ;;
        *) [ -z "$hosts" ] || die "unexpected argument '$1' before -- (try --help)"; hosts=$1; shift ;;
    esac
done
[ -n "$hosts" ] || die "missing N, the number of hosts (try --help)"
[ $# -ge 1 ] || die "missing -- CMD [ARGS...] (try --help)"
[[ "$hosts" =~ ^[0-9]+$ ]] && [ "$((10#$hosts))" -ge 1 ] && [ "$((10#$hosts))" -le 250 ] \
    || die "N must be an integer from 1 to 250, got '$hosts'"
hosts=$((10#$hosts))
np=${np:-$hosts}
[[ "$np" =~ ^[0-9]+$ ]] && [ "$((10#$np))" -ge 1 ] || die "--np must be a positive integer, got '$np'"
np=$((10#$np))

# ---------------------------------------------------------------------------------------------------------------
# Environment checks (before creating anything)
[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces need CAP_SYS_ADMIN/CAP_NET_ADMIN); try sudo"
command -v ip >/dev/null 2>&1 || die "'ip' not found: install iproute2 (apt-get install iproute2)"
command -v unshare >/dev/null 2>&1 || die "'unshare' not found: install util-linux"
command -v mpirun >/dev/null 2>&1 || die "'mpirun' not found: install openmpi-bin (bash Deploy/setup.sh)"

subnet=${MOE_CLUSTER_SUBNET:-10.77.0.0/24}
[[ "$subnet" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.0/24$ ]] \
    && [ "${BASH_REMATCH[1]}" -le 255 ] && [ "${BASH_REMATCH[2]}" -le 255 ] && [ "${BASH_REMATCH[3]}" -le 255 ] \
    || die "MOE_CLUSTER_SUBNET must look like 10.77.0.0/24 (a /24), got '$subnet'"
net3=${subnet%.0/24}                         # "10.77.0": host I gets $net3.$((I+1))

prefix=${MOE_CLUSTER_PREFIX:-moe-$$}
[[ "$prefix" =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,40}$ ]] \
    || die "MOE_CLUSTER_PREFIX must be letters, digits and '-' (at most 41), got '$prefix'"
# A namespace left by an earlier --keep run (or a reused pid) must not be adopted and then deleted by us.
if ip netns list 2>/dev/null | awk '{print $1}' | grep -q -- "^$prefix-"; then
    die "namespaces named $prefix-* already exist (an earlier --keep run?); remove them or set MOE_CLUSTER_PREFIX"
fi

# The program: relative paths become absolute (the daemons do not start in our cwd), bare names are looked up
# in PATH here so a typo is reported now rather than once per rank.
cmd=$1; shift
case "$cmd" in
    /*) ;;
    */*) cmd="$PWD/$cmd" ;;
    *) found=$(command -v -- "$cmd" 2>/dev/null) || die "command not found: $cmd"; cmd=$found ;;
esac
[ -f "$cmd" ] && [ -x "$cmd" ] || die "not an executable file: $cmd"
wdir=$PWD

# ---------------------------------------------------------------------------------------------------------------
# State and cleanup. Everything created is recorded as it is created, so a failure half-way through setup
# removes exactly what exists. The EXIT trap runs on normal exit, on errors (set -e) and after the signal
# traps below call exit.
hub="$prefix-hub"
created_ns=()                                # namespaces to delete, hub last
tmp=""                                       # temp dir: hostfile, rsh agent, teardown script
mpirun_pid=""
cleaned=0
t_start=$EPOCHREALTIME
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

ns_pids() {
    # The processes living in our namespaces (mpirun, orted, ranks, launchers), one pid per line.
    local ns
    for ns in "${created_ns[@]}"; do
        [ -e "/run/netns/$ns" ] && ip netns pids "$ns" 2>/dev/null
    done
    return 0
}

kill_ns_procs() {
    # Processes that still live in the namespaces would keep them (and the veths) alive after
    # "ip netns delete": TERM them, give them up to 3 s, then KILL what is left.
    local sig pids _
    for sig in TERM KILL; do
        mapfile -t pids < <(ns_pids)
        [ "${#pids[@]}" -gt 0 ] || return 0
        debug "kill -$sig ${pids[*]}"
        kill -"$sig" "${pids[@]}" 2>/dev/null
        for _ in $(seq 1 30); do
            [ -n "$(ns_pids)" ] || return 0
            sleep 0.1
        done
    done
}

cleanup() {
    local rc=$?
    [ "$cleaned" = 0 ] || return 0
    cleaned=1
    set +e
    trap '' INT TERM HUP                     # a second Ctrl-C must not interrupt the teardown half-way
    if [ -n "$mpirun_pid" ] && kill -0 "$mpirun_pid" 2>/dev/null; then
        # mpirun still running (we were interrupted): let it shut its daemons and ranks down properly first.
        kill -TERM "$mpirun_pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$mpirun_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ "$keep" = 1 ]; then
        kill_ns_procs                        # keep the network, not the processes
        echo "$prog: --keep: left namespaces ${created_ns[*]:-(none)} and $tmp; remove with: bash $tmp/teardown.sh" >&2
        return 0
    fi
    kill_ns_procs
    local ns
    for ns in "${created_ns[@]}"; do
        # Deleting a namespace destroys the interfaces in it: the veth pairs and the bridge go with it.
        [ -e "/run/netns/$ns" ] || continue
        ip netns delete "$ns" || echo "$prog: warning: could not delete namespace $ns" >&2
    done
    [ -n "$tmp" ] && rm -rf -- "$tmp"
    debug "teardown done at $(elapsed "$t_start") s"
    return "$rc"
}

on_signal() {
    # bash runs a trap only after the foreground command returns, which is why mpirun runs in the background
    # and we "wait" for it: wait returns as soon as a trapped signal arrives. cleanup stops mpirun.
    echo "$prog: caught SIG$1, stopping the job and removing the cluster" >&2
    exit "$2"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

setup_fail() { echo "$prog: setup failed: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------------------
# Network: hub namespace with a bridge, one namespace per host with a veth into the bridge.
# Any failing command during setup: one line, exit 1 (not the command's own code, which could be 2 = usage).
trap 'setup_fail "$BASH_COMMAND"' ERR
tmp=$(mktemp -d "/tmp/$prefix.XXXXXX")

# A namespace is recorded before it is created, so a signal in between cannot leak it.
created_ns+=("$hub")
ip netns add "$hub" || setup_fail "ip netns add $hub (kernel without network namespaces, or no CAP_SYS_ADMIN?)"
ip -n "$hub" link set lo up
ip -n "$hub" link add br0 type bridge || setup_fail "cannot create a bridge (kernel module 'bridge' missing?)"
# "addrgenmode none": no IPv6 link-local addresses, so no IPv6 autoconfiguration chatter; the fake network is
# IPv4 only (OpenMPI is told to use only $subnet anyway).
ip -n "$hub" link set br0 addrgenmode none 2>/dev/null || true
ip -n "$hub" link set br0 up

hostnames=() addrs=()
for ((i = 0; i < hosts; i++)); do
    ns="$prefix-h$i"
    addr="$net3.$((i + 1))"
    created_ns=("$ns" "${created_ns[@]}")    # hosts first, hub last
    ip netns add "$ns" || setup_fail "ip netns add $ns"
    # Both veth ends are created directly inside namespaces (never in the root namespace).
    ip -n "$hub" link add "h$i" type veth peer name eth0 netns "$ns" \
        || setup_fail "cannot create a veth pair (kernel module 'veth' missing?)"
    ip -n "$hub" link set "h$i" addrgenmode none 2>/dev/null || true
    ip -n "$hub" link set "h$i" master br0 up
    ip -n "$ns" link set lo up               # OpenMPI and the ranks use loopback inside each host
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 addrgenmode none 2>/dev/null || true
    ip -n "$ns" link set eth0 up
    hostnames+=("$ns") addrs+=("$addr")
    debug "host $i: namespace $ns, hostname $ns, address $addr"
done

# ---------------------------------------------------------------------------------------------------------------
# Hostfile: one line per host. With P <= N every host has 1 slot (hosts beyond P stay idle); with P > N the
# ranks are spread evenly (the first P mod N hosts get one more), and mpirun's default by-slot mapping then puts
# ranks 0..k-1 on host 0, the next ones on host 1, and so on; rank 0 (the coordinator) is always on host 0.
hostfile="$tmp/hostfile"
{
    echo "# generated by $prog: $hosts fake hosts, $np ranks"
    for ((i = 0; i < hosts; i++)); do
        if [ "$np" -le "$hosts" ]; then s=1; else s=$((np / hosts + (i < np % hosts ? 1 : 0))); fi
        echo "${addrs[$i]} slots=$s"
    done
} > "$hostfile"

# rsh agent: mpirun calls it like ssh, "AGENT HOST orted ARGS...", where the words form one shell command line
# (OpenMPI quotes some of them for the remote shell, e.g. the "...;tcp://..." contact URI), so it is evaluated by
# sh like ssh would, inside the host's network namespace and its own UTS namespace with the host's hostname.
agent="$tmp/rsh-agent"
{
    echo '#!/bin/sh'
    echo "# generated by $prog: maps a fake host's address to its namespace and runs the command there"
    echo 'while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done   # ssh-style options'
    echo 'host=$1; shift'
    echo 'case "$host" in'
    for ((i = 0; i < hosts; i++)); do echo "    ${addrs[$i]}|${hostnames[$i]}) ns=${hostnames[$i]} ;;"; done
    echo '    *) echo "rsh-agent: unknown host $host" >&2; exit 255 ;;'
    echo 'esac'
    [ "${MOE_CLUSTER_DEBUG:-0}" = 1 ] && echo 'echo "rsh-agent: $ns: $*" >&2'
    echo 'exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns && $*"'
} > "$agent"
chmod 755 "$agent"

# Teardown script for --keep (and for cleaning up by hand after a SIGKILL of this script).
{
    echo '#!/bin/sh'
    echo "# generated by $prog: removes the fake cluster $prefix"
    for ns in "${created_ns[@]}"; do echo "p=\$(ip netns pids $ns 2>/dev/null); [ -z \"\$p\" ] || kill -9 \$p"; done
    for ns in "${created_ns[@]}"; do echo "ip netns delete $ns"; done
    echo "rm -rf $tmp"
} > "$tmp/teardown.sh"
trap - ERR

# ---------------------------------------------------------------------------------------------------------------
# mpirun
envs=()
for v in SWIFT_BACKTRACE PATH LD_LIBRARY_PATH HOME OMP_NUM_THREADS OPENBLAS_NUM_THREADS \
         $(compgen -e | grep '^MOE_' | grep -v '^MOE_CLUSTER_' || true); do
    [ -n "${!v+x}" ] && envs+=(-x "$v")
done
extra=()
[ -n "${MPIRUN_EXTRA_ARGS:-}" ] && read -r -a extra <<< "$MPIRUN_EXTRA_ARGS"

# shellcheck disable=SC2054  # "tcp,self" is one argument
mpi=(mpirun
    --allow-run-as-root                      # we are root, for the namespaces
    --oversubscribe                          # more ranks than this box's cores is the normal case here
    -np "$np"
    --hostfile "$hostfile"
    --mca plm_rsh_agent "$agent"             # "ssh" into a fake host = enter its namespaces
    --mca plm_rsh_no_tree_spawn 1            # mpirun launches every daemon itself, all through the agent
    --mca oob_tcp_if_include "$subnet"       # daemon control traffic and MPI traffic only on the private
    --mca btl_tcp_if_include "$subnet"       # bridge (not lo, not any other interface)
    --mca btl tcp,self                       # TCP between ranks, like real hosts; no /dev/shm transport
    --mca mpi_yield_when_idle 1              # oversubscribed: yield instead of busy-polling (4 ms -> 13 us)
    --bind-to none                           # every fake host sees all cores; binding would stack ranks on core 0
    --wdir "$wdir"                           # relative paths in ARGS resolve on every host
    "${envs[@]}"
    "${extra[@]}"
    "$cmd" "$@")
debug "setup done in $(elapsed "$t_start") s; hostfile: $(grep -v '^#' "$hostfile" | tr '\n' ',')"
debug "in ${hostnames[0]}: ${mpi[*]}"

# mpirun runs in host 0 with that host's hostname; background + wait so that signals reach our traps at once.
# (A script started with "&" by a non-interactive shell inherits SIGINT ignored and cannot trap it: stop it
# with SIGTERM there. From a terminal, Ctrl-C works.)
# "<&0" keeps our stdin (bash would give a background job /dev/null): mpirun forwards it to rank 0.
ip netns exec "${hostnames[0]}" unshare --uts sh -c 'hostname "$1" && shift && exec "$@"' sh "${hostnames[0]}" \
    "${mpi[@]}" <&0 &
mpirun_pid=$!
set +e
wait "$mpirun_pid"
rc=$?
set -e
mpirun_pid=""
debug "mpirun exited with $rc at $(elapsed "$t_start") s"
exit "$rc"
