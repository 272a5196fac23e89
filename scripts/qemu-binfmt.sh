#!/usr/bin/env bash
# Lets this amd64 machine run linux/arm64 programs under QEMU user emulation, which the arm64
# images need while they are built (mmdebstrap runs the foreign dpkg, buildah runs the RUN
# steps of the arm64 stages) and checked. Idempotent; needs root.
#
#   bash scripts/qemu-binfmt.sh          # install qemu-user-static, register qemu-aarch64, check
#
# 1. qemu-user-static and arch-test from apt when missing (apt-get update first when the
#    package lists do not know them).
# 2. binfmt_misc mounted on /proc/sys/fs/binfmt_misc when it is not.
# 3. qemu-aarch64 registered from Debian's /usr/lib/binfmt.d/qemu-aarch64.conf when it is not.
#    The entry must carry the F flag: the kernel then opens the interpreter once, at
#    registration, so arm64 programs also start inside chroots and containers, where
#    /usr/libexec/qemu-binfmt does not exist. An entry without F (left by an older setup) is
#    replaced.
# 4. An arm64 program run directly through the kernel's binfmt_misc (not by calling qemu):
#    a 160-byte static aarch64 ELF kept below that writes "aarch64" and exits 0, so that the
#    check needs no download of an arm64 package.
set -euo pipefail

CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
BINFMT=/proc/sys/fs/binfmt_misc
ENTRY=$BINFMT/qemu-aarch64

log() { printf 'qemu-binfmt: %s\n' "$*" >&2; }
die() { printf 'qemu-binfmt: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get, mount, binfmt_misc registration)"

# arch-test: mmdebstrap refuses a foreign --architectures without it ("install arch-test for
# foreign architecture support"), which the arm64 bases of images.sh need.
if ! command -v qemu-aarch64-static >/dev/null 2>&1 || [[ ! -f $CONF ]] || ! command -v arch-test >/dev/null 2>&1; then
  if ! apt-cache show qemu-user-static arch-test >/dev/null 2>&1; then
    log "apt-get update (the package lists do not know qemu-user-static or arch-test)"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
  fi
  log "installing qemu-user-static and arch-test"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq qemu-user-static arch-test >/dev/null
fi
[[ -f $CONF ]] || die "$CONF missing after installing qemu-user-static"

if ! mountpoint -q "$BINFMT"; then
  log "mounting binfmt_misc on $BINFMT"
  mount -t binfmt_misc binfmt_misc "$BINFMT"
fi

# Debian's line ends in the flags field (":OPF"); the register file takes it as it is.
line=$(grep -v '^#' "$CONF" | head -n 1)
[[ ${line##*:} == *F* ]] || die "$CONF has no F flag: '${line##*:}'"

if [[ -f $ENTRY ]] && ! grep -q '^flags:.*F' "$ENTRY"; then
  log "qemu-aarch64 is registered without the F flag: replacing it"
  echo -1 >"$ENTRY"
fi
if [[ -f $ENTRY ]]; then
  log "qemu-aarch64 already registered ($(sed -n 's/^flags: //p' "$ENTRY"))"
else
  printf '%s\n' "$line" >"$BINFMT/register"
  log "registered qemu-aarch64 from $CONF"
fi
grep -qx enabled "$ENTRY" || die "$ENTRY is not enabled"
grep -qx enabled "$BINFMT/status" || die "binfmt_misc is disabled ($BINFMT/status)"

# The ELF: header, one PT_LOAD at 0x400000, then write(1, "aarch64\n", 8) and exit(0) in
# aarch64 machine code (movz/adr/svc), the message after the code.
HELLO_ARM64=f0VMRgIBAQAAAAAAAAAAAAIAtwABAAAAeABAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAEAAOAABAAAAAAAAAAEAAAAFAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAAoAAAAAAAAACgAAAAAAAAAAAQAAAAAAAAIACA0uEAABACAYDSCAiA0gEAANQAAIDSqAuA0gEAANRhYXJjaDY0Cg==
probe=$(mktemp /tmp/qemu-binfmt-probe.XXXXXX)
trap 'rm -f "$probe"' EXIT
base64 -d <<<"$HELLO_ARM64" >"$probe"
chmod 0755 "$probe"
out=$(timeout 30 "$probe") || die "an arm64 program did not run through binfmt_misc"
[[ $out == aarch64 ]] || die "the arm64 probe printed '$out'"
log "ok: an arm64 program runs ($(sed -n 's/^interpreter //p' "$ENTRY"), flags $(sed -n 's/^flags: //p' "$ENTRY"))"
