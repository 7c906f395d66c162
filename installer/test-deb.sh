#!/usr/bin/env bash
# Installs the Debian package into a fresh Debian 12 root made with debootstrap (from the archive
# apt on this machine uses) and checks what an administrator relies on: the binary, the HSM
# profiles with SoftHSM2 found, the man page, the demo, the group and data directory, the
# first-run check, the group message for a non-member; then an upgrade that keeps the ledger and
# the edited station.toml, a remove that keeps them, a purge that deletes the data, and an install
# without the recommended packages, where `setup --check` names what is missing.
#   installer/test-deb.sh [--binary PATH]    (as root; PATH: package this binary, see build-deb.sh)
# The debootstrapped base is cached in target/debian/bookworm-base.tar (delete it to start clean).
# Slow (minutes, mostly debootstrap and apt), so CI does not run it; see README "Installing".
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $(id -u) -eq 0 ]] || { echo "test-deb.sh: run as root (debootstrap and chroot need it)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "test-deb.sh: apt-get install debootstrap" >&2; exit 1; }

start=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }
fail() { echo "test-deb.sh: FAILED: $*" >&2; exit 1; }

step "build the package"
deb=$(installer/build-deb.sh "$@" | tail -n1)
[[ -f "$deb" ]] || fail "build-deb.sh made no package"

# The mirror apt is configured with (deb822 or one-line sources).
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
[[ -n "$mirror" ]] || mirror=$(sed -n 's/^deb \(http[^ ]*debian\)\/* bookworm .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}

work=target/debian/test-root
base=target/debian/bookworm-base.tar
root=$(realpath -m "$work")
mounted=()
cleanup() {
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"
if [[ -f "$base" ]]; then
  step "unpack the cached Debian 12 base"
  tar -C "$work" -xf "$base"
else
  step "debootstrap Debian 12 from $mirror"
  debootstrap --variant=minbase bookworm "$work" "$mirror" >target/debian/debootstrap.log 2>&1 \
    || { tail -n 20 target/debian/debootstrap.log; fail "debootstrap"; }
  tar -C "$work" -cf "$base" .
fi
cp /etc/resolv.conf "$work/etc/resolv.conf"
for m in proc sys dev dev/pts; do
  case $m in
    proc) mount -t proc proc "$root/proc" ;;
    sys) mount -t sysfs sys "$root/sys" ;;
    dev) mount -t tmpfs -o mode=755 dev "$root/dev"
         for n in null zero full random urandom tty; do cp -a "/dev/$n" "$root/dev/$n"; done
         ln -s /proc/self/fd "$root/dev/fd"; ln -s pts/ptmx "$root/dev/ptmx"; mkdir -p "$root/dev/pts" "$root/dev/shm" ;;
    dev/pts) mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" ;;
  esac
  mounted+=("$root/$m")
done
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

step "install $(basename "$deb") with its Depends and Recommends"
cp "$deb" "$root/tmp/"
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "/tmp/$(basename "$deb")" >/dev/null \
  || fail "apt-get install"

step "dps-station --version"
version=$(in_root dps-station --version)
echo "$version"
grep -q "^dps-station " <<<"$version" || fail "--version: $version"

step "hsm profiles: read from /usr/share, SoftHSM2 found"
profiles=$(in_root dps-station hsm profiles)
grep -q "profiles from /usr/share/dps-station/hsm-profiles" <<<"$profiles" || fail "profile directory: $profiles"
grep -A1 "^softhsm2" <<<"$profiles" | grep -q "installed: /usr/lib/softhsm/libsofthsm2.so" || fail "softhsm2 not found: $profiles"

step "man dps-station, completions, desktop entry, icons"
in_root env MANPAGER=cat MANWIDTH=100 man dps-station | grep -q "dps-station" || fail "man dps-station"
in_root env MANPAGER=cat man dps-station-fixture-detect | grep -q "Enter" || fail "man dps-station-fixture-detect"
for f in /usr/share/bash-completion/completions/dps-station /usr/share/zsh/vendor-completions/_dps-station \
         /usr/share/fish/vendor_completions.d/dps-station.fish /usr/share/applications/io.github.dpsstation.DpsStation.desktop \
         /usr/share/metainfo/io.github.dpsstation.DpsStation.metainfo.xml /usr/share/icons/hicolor/256x256/apps/dps-station.png \
         /usr/lib/udev/rules.d/60-dps-station.rules; do
  [[ -f "$root$f" ]] || fail "missing $f"
done

step "group, data directory, conffile"
in_root getent group dps-station >/dev/null || fail "no dps-station group"
perms=$(in_root stat -c '%a %U %G' /var/lib/dps-station)
[[ "$perms" == "2770 root dps-station" ]] || fail "/var/lib/dps-station is $perms"
in_root dpkg-query -W -f='${Conffiles}\n' dps-station | grep -q /etc/dps-station/station.toml || fail "station.toml is no conffile"

step "first run: setup --check reports the unconfigured station"
check=$(in_root dps-station setup --check || true)
grep -q "not set up yet" <<<"$check" && grep -q "MISSING station file" <<<"$check" || fail "setup --check: $check"

step "demo --headless"
in_root dps-station demo --headless --devices 2 >target/debian/demo.log 2>&1 || { tail -n 20 target/debian/demo.log; fail "demo"; }
tail -n 3 target/debian/demo.log

step "set up the station and make a ledger"
in_root dps-station setup --name line-9 --ledger /var/lib/dps-station/ledger.db --hsm-profile softhsm2 \
  --token-label factory-ca --slot A1=/dev/dps-fixture/A1 --dps-connection-env DPS_CS </dev/null >/dev/null
in_root dps-station ledger init --ledger /var/lib/dps-station/ledger.db >/dev/null
in_root dps-station ledger verify --ledger /var/lib/dps-station/ledger.db >/dev/null || fail "ledger verify"

step "an operator not in the group is told the group and the command"
in_root useradd --create-home op
msg=$(in_root su op -s /bin/sh -c 'USER=op dps-station ledger stats --ledger /var/lib/dps-station/ledger.db' 2>&1 || true)
grep -q "sudo usermod -aG dps-station op" <<<"$msg" || fail "non-member message: $msg"
head -n1 <<<"$msg"
# `run` finds the installed station.toml by itself and warns before any slot fails on its port.
msg=$(in_root su op -s /bin/sh -c 'cd /tmp && USER=op dps-station run --headless --batch /tmp/none.toml' 2>&1 || true)
grep -q "warning: user op is not in the \`dps-station\` group" <<<"$msg" || fail "run as a non-member: $msg"
grep -q "/tmp/none.toml" <<<"$msg" || fail "run did not read the installed station.toml: $msg"
in_root usermod -aG dps-station op
in_root su op -s /bin/sh -c 'dps-station ledger stats --ledger /var/lib/dps-station/ledger.db' >/dev/null \
  || fail "a member cannot read the ledger"

step "upgrade to a newer version keeps the ledger and the edited station.toml"
next="$root/tmp/next"
rm -rf "$next"; dpkg-deb -R "$deb" "$next"
sed -i 's/^Version: \(.*\)-1$/Version: \1-2/' "$next/DEBIAN/control"
fakeroot dpkg-deb --build -Zxz "$next" "$root/tmp/next.deb" >/dev/null
in_root env DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/next.deb >/dev/null || fail "upgrade"
in_root dpkg-query -W -f='${Version}\n' dps-station | grep -q -- '-2$' || fail "not upgraded"
grep -q 'name = "line-9"' "$root/etc/dps-station/station.toml" || fail "upgrade replaced station.toml"
in_root dps-station ledger verify --ledger /var/lib/dps-station/ledger.db >/dev/null || fail "ledger after upgrade"

step "remove keeps the ledger and station.toml"
in_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq dps-station >/dev/null
[[ -f "$root/var/lib/dps-station/ledger.db" ]] || fail "remove deleted the ledger"
[[ -f "$root/etc/dps-station/station.toml" ]] || fail "remove deleted station.toml"
[[ ! -e "$root/usr/bin/dps-station" ]] || fail "remove left the binary"

step "purge deletes the data"
in_root dpkg --purge dps-station >/dev/null
[[ ! -e "$root/var/lib/dps-station" ]] || fail "purge left /var/lib/dps-station"
[[ ! -e "$root/etc/dps-station" ]] || fail "purge left /etc/dps-station"

step "without the recommended packages the station says what is missing"
in_root env DEBIAN_FRONTEND=noninteractive apt-get autoremove --purge -y -qq >/dev/null
[[ ! -e "$root/usr/lib/softhsm/libsofthsm2.so" ]] || fail "softhsm2 still installed"
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$deb")" >/dev/null \
  || fail "install without recommends"
check=$(in_root dps-station setup --check || true)
grep -q "MISSING HSM module (softhsm2).*sudo apt install softhsm2" <<<"$check" || fail "setup --check: $check"
grep -q "MISSING udevadm" <<<"$check" || fail "setup --check: $check"
demo=$(in_root dps-station demo --headless --devices 1 2>&1) || fail "demo without SoftHSM2: $demo"
grep -q "using the SOFTWARE key store" <<<"$demo" || fail "the demo does not say it uses software keys: $demo"
in_root dpkg --purge dps-station >/dev/null

step "all checks passed"
