#!/bin/sh
# Installs the amazon.aws collection from PyPI (Ansible Galaxy is not reachable from every CI):
# the `ansible` community package's wheel holds it. pip checks the wheel's sha256; only
# ansible_collections/amazon/aws is unpacked into DEST (a collections path).
#   install-collection.sh PIP DEST
set -eu
PIP=$1
DEST=$2
ANSIBLE_VERSION=12.3.0   # brings amazon.aws 10.1.2; needs Python >= 3.11
ANSIBLE_SHA256=cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "ansible==$ANSIBLE_VERSION --hash=sha256:$ANSIBLE_SHA256" > "$work/req.txt"
"$PIP" download --quiet --disable-pip-version-check --no-deps --require-hashes -r "$work/req.txt" -d "$work"
mkdir -p "$DEST"
python3 - "$work/ansible-$ANSIBLE_VERSION-py3-none-any.whl" "$DEST" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("ansible_collections/amazon/aws/")]
    if not names:
        sys.exit("amazon.aws not found in " + wheel)
    z.extractall(dest, names)
print("amazon.aws unpacked into", dest, "(%d files)" % len(names))
PY
