#!/usr/bin/env bash
# The system packages that `make test` needs beside the virtual environment, from Debian's archive:
#   postgresql  the tests start their own server (initdb into a temporary directory, pg_ctl on a free port on
#               127.0.0.1, as the unprivileged user `postgres`) to run MLflow's store on PostgreSQL;
#   chromium    the UI tests drive it headless over the links `hpo launch` prints.
#
# Idempotent: what is installed already is left alone, so a second run only checks. Without root or apt-get it
# installs nothing and says which tests will skip (each skip names its reason). HPO_SKIP_SYSTEM=1 skips it.
set -euo pipefail
say() { printf '\033[1m[system]\033[0m %s\n' "$*"; }

[[ ${HPO_SKIP_SYSTEM:-} == 1 ]] && { say "HPO_SKIP_SYSTEM=1: not installing system packages"; exit 0; }

missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
if [[ ${#missing[@]} -eq 0 ]]; then
  say "postgresql and chromium already installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  say "not installing ${missing[*]} (needs root and apt-get): the tests that need them will skip, naming why"
  exit 0
fi
say "installing ${missing[*]} from Debian's archive"
export DEBIAN_FRONTEND=noninteractive
# A stale package index makes apt-get fail with 404s; refresh it once, bounded, then install.
timeout 300 apt-get update -qq || say "apt-get update failed; trying the install with the current index"
timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" fonts-liberation >/dev/null
# Debian's postgresql package starts a cluster of its own on port 5432; the tests need none of it.
if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v pg_ctlcluster >/dev/null; then
  for conf in /etc/postgresql/*/main; do
    [[ -d $conf ]] || continue
    version=$(basename "$(dirname "$conf")")
    pg_ctlcluster "$version" main stop >/dev/null 2>&1 || true
  done
fi
say "done"
