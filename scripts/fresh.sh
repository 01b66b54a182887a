#!/bin/bash
# Run by sh: start again under bash.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# fresh.sh — the README's quick start on a fresh Debian 12, for real.
#
#   sh scripts/fresh.sh [--keep] [--root DIR] [--rev REV] [--variant V]
#                       [--overlay FILE]... [REPO]
#
# Makes a fresh Debian 12 (bookworm) root with mmdebstrap, copies a
# `git clone` of REPO (default: the repository this script is in; its
# committed state: HEAD, or --rev REV) to /root/tlsfilter in it, and runs
# there, as root, the quick start's two commands:
#     sh scripts/demo.sh
#     sh scripts/test.sh
# then prints the end of what each printed (test.sh's last line is
# "N passed, N failed, N skipped"), how long each step took, and removes
# the root again (--keep keeps it, and its log; a later --root DIR with
# the same DIR reuses a kept root instead of making a new one).
#
# The root: mmdebstrap --variant=minbase (essential packages and apt only:
# everything else must come from scripts/deps.sh), with this machine's apt
# sources (/etc/apt/sources.list.d/debian.sources, or FRESH_SOURCES=FILE:
# bookworm, bookworm-updates, bookworm-security), an /etc/hosts as the
# installer writes one (localhost), the host's /etc/resolv.conf. The
# commands run under `unshare --pid --fork --mount`: a private /proc
# (process look-ups see only the root's processes, and whatever is left
# running is killed when the run ends), a private /dev (device nodes,
# /dev/pts, /dev/shm: nothing the tests bind there, such as /dev/log,
# reaches the host's), /sys, tmpfs on /run and /tmp; the mounts vanish
# with the mount namespace. The network is the host's (apt needs it; the
# tests use free high loopback ports).
#
# --overlay FILE copies FILE (a path relative to REPO) from REPO's working
# tree over the clone: for trying an uncommitted fix in the fresh root.
# --variant V: mmdebstrap's variant instead of minbase (e.g. important).
#
# Needs: root, mmdebstrap, git, util-linux (unshare, mount), the network to
# the Debian mirror (the base system and scripts/deps.sh's packages, a few
# hundred MB), and 1.5 GB in /var/tmp. Takes about 4 minutes on 2 cores with
# a near mirror: the root 15 s, demo.sh (deps.sh's install, the build, the
# demo) 30 s, test.sh (the build again, make check) 2.5 min; a slow mirror
# adds its download time. The log of the whole run is kept in FRESH_LOG
# (default /var/tmp/tlsfilter-fresh.log).
# Exit status: 0 when demo.sh and test.sh both exited 0.
set -u

die() {
	echo "fresh.sh: $*" >&2
	exit 2
}
usage() {
	sed -n 's/^#   //p' "$0" | sed -n 1,2p >&2
	exit 64
}

keep=0 root='' rev=HEAD variant=minbase overlays=()
while [ $# -gt 0 ]; do
	case $1 in
	--keep | -k) keep=1 ;;
	--root) root=${2:?--root needs a directory}; shift ;;
	--rev) rev=${2:?--rev needs a revision}; shift ;;
	--variant) variant=${2:?--variant needs a name}; shift ;;
	--overlay) overlays+=("${2:?--overlay needs a file}"); shift ;;
	-h | --help) usage ;;
	-*) usage ;;
	*) break ;;
	esac
	shift
done
[ $# -le 1 ] || usage
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd) || die "no repository"
sources=${FRESH_SOURCES:-/etc/apt/sources.list.d/debian.sources}
log=${FRESH_LOG:-/var/tmp/tlsfilter-fresh.log}

[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap, chroot, mounts)"
for t in mmdebstrap git unshare chroot mount; do
	command -v "$t" >/dev/null || die "needs $t"
done
[ -f "$sources" ] || die "no apt sources file $sources (set FRESH_SOURCES)"
# (resolved once: the lead may commit while this runs)
commit=$(git -C "$repo" rev-parse --verify -q "$rev^{commit}") ||
	die "$repo: no commit $rev"

reuse=0
if [ -z "$root" ]; then
	root=$(mktemp -d /var/tmp/tlsfilter-fresh.XXXXXX) || die "mktemp failed"
elif [ -x "$root/usr/bin/apt-get" ]; then
	reuse=1
else
	mkdir -p "$root" || die "cannot make $root"
fi
root=$(cd "$root" && pwd)
[ "$root" != / ] || die "the root cannot be /"

# Unmount whatever is still mounted below the root (nothing should be: the
# mounts belong to the mount namespace of the run), then remove it.
cleanup() {
	local m
	findmnt -rn -o TARGET | grep -F "$root/" | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || :
	done
	if [ "$keep" -eq 1 ]; then
		echo "fresh.sh: kept the root $root (log: $log)"
	else
		rm -rf --one-file-system "$root"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

: >"$log"
# step NAME CMD...: run CMD with its output in the log; note the time.
times=()
step() {
	local name=$1 t0 rc
	shift
	printf '\n=== fresh.sh: %s\n' "$name" | tee -a "$log"
	t0=$(date +%s)
	"$@" >>"$log" 2>&1
	rc=$?
	times+=("$(printf '%-28s %4d s  (exit %d)' "$name" $(($(date +%s) - t0)) "$rc")")
	echo "exit $rc after $(($(date +%s) - t0)) s" | tee -a "$log"
	return "$rc"
}
start=$(date +%s)

if [ "$reuse" -eq 0 ]; then
	step "mmdebstrap ($variant)" mmdebstrap --variant="$variant" \
		--customize-hook='printf "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" >"$1/etc/hosts"' \
		bookworm "$root" "$sources" || die "mmdebstrap failed (log: $log)"
fi
# Fresh, like the installer leaves them: no apt lists yet (deps.sh updates).
cp -L /etc/resolv.conf "$root/etc/resolv.conf" || die "no /etc/resolv.conf"
[ -s "$root/etc/hosts" ] ||
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

src=/root/tlsfilter
rm -rf --one-file-system "${root:?}$src"
clone() {
	git clone -q --no-hardlinks "$repo" "$root$src" &&
		git -C "$root$src" -c advice.detachedHead=false checkout -q "$commit" &&
		git -C "$root$src" log -1 --format='clone of %H %s'
}
step "git clone ($rev)" clone || die "git clone failed (log: $log)"
for f in "${overlays[@]}"; do
	if ! mkdir -p "$(dirname "$root$src/$f")" || ! cp -p "$repo/$f" "$root$src/$f"; then
		die "--overlay $f: cannot copy"
	fi
	echo "overlay from the working tree: $f" | tee -a "$log"
done

# inroot CMD: run the shell command CMD as root in the fresh root, in its
# own pid and mount namespaces, with a clean environment.
inroot() {
	unshare --pid --fork --mount --propagation private -- /bin/bash -c '
		set -e
		r=$1
		# the root a mount point of its own, so that mount --make-private /
		# (unshare --propagation, syslog.test) works inside the chroot
		mount --bind "$r" "$r"
		mount -t proc proc "$r/proc"
		mount -t sysfs -o ro sysfs "$r/sys" 2>/dev/null || mount --rbind -o ro /sys "$r/sys"
		mount -t tmpfs -o mode=755,nosuid,size=64M tmpfs "$r/dev"
		for d in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
			IFS=: read -r n ma mi <<<"$d"
			mknod -m 666 "$r/dev/$n" c "$ma" "$mi"
		done
		mkdir "$r/dev/pts" "$r/dev/shm"
		mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$r/dev/pts"
		ln -s pts/ptmx "$r/dev/ptmx"
		mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/dev/shm"
		ln -s /proc/self/fd "$r/dev/fd"
		ln -s /proc/self/fd/0 "$r/dev/stdin"
		ln -s /proc/self/fd/1 "$r/dev/stdout"
		ln -s /proc/self/fd/2 "$r/dev/stderr"
		mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$r/run"
		mkdir -p "$r/run/lock" && chmod 1777 "$r/run/lock"
		mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
		exec chroot "$r" /usr/bin/env -i HOME=/root USER=root LOGNAME=root \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			LANG=C.UTF-8 TERM=dumb SHELL=/bin/sh /bin/sh -c "$2"
	' fresh "$root" "$1"
}

step "sh scripts/demo.sh" inroot "cd $src && sh scripts/demo.sh </dev/null"
demo_rc=$?
demo_tail=$(sed -n '/^=== fresh.sh: sh scripts\/demo.sh$/,/^=== fresh.sh: /p' "$log" | grep -v '^=== fresh.sh:\|^exit [0-9]* after\|^ *$' | tail -n 3)
step "sh scripts/test.sh" inroot "cd $src && sh scripts/test.sh </dev/null"
test_rc=$?
test_tail=$(sed -n '/^=== fresh.sh: sh scripts\/test.sh$/,$p' "$log" | grep -v '^exit [0-9]* after' | grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -n 1)
failed=$(sed -n '/^=== fresh.sh: sh scripts\/test.sh$/,$p' "$log" | grep -E '^(FAIL|ERROR|XPASS): [^ ]+ ' | sort -u)

echo
echo "=== fresh.sh: summary (${commit:0:7} of $repo, variant $variant${overlays:+, ${#overlays[@]} file(s) from the working tree})"
printf '  %s\n' "${times[@]}"
echo "  total                        $(($(date +%s) - start)) s"
echo "demo.sh (exit $demo_rc) ended with:"
printf '%s\n' "$demo_tail" | sed 's/^/  /'
echo "test.sh (exit $test_rc) ended with:"
printf '  %s\n' "${test_tail:-(no summary line)}"
[ -z "$failed" ] || { echo "failed tests:"; printf '%s\n' "$failed" | sed 's/^/  /'; }
echo "log: $log"
[ "$demo_rc" -eq 0 ] && [ "$test_rc" -eq 0 ]
