#!/bin/sh
# Installs catgad as the image has it; the Dockerfile runs this, and CI runs it outside Docker
# (tests/deploy/check_install.sh) so the image's install steps are proven on every change.
#
#   sh docker/install.sh SOURCE PREFIX SHARE ETC
#
# SOURCE  the repository checkout
# PREFIX  the virtualenv made for catgad (image: /opt/catgad)
# SHARE   the example configs and the health check (image: /usr/share/catgad)
# ETC     the default config, the path the documentation says to mount over (image: /etc/catgad)
set -eu

if [ "$#" -ne 4 ]; then
    echo "usage: install.sh SOURCE PREFIX SHARE ETC" >&2
    exit 2
fi
src=$1
prefix=$2
share=$3
etc=$4

python3 -m venv "$prefix"
# Not editable: the image keeps no source tree. The example plugin is what the example's
# `discounts` handler names.
"$prefix/bin/python" -m pip install --quiet --disable-pip-version-check \
    "$src" "$src/plugins/catgad_example_plugin"

mkdir -p "$share/examples" "$etc"
cp "$src"/config/examples/*.yaml "$share/examples/"
cp "$src/docker/healthcheck.py" "$share/healthcheck.py"

# The default config: the orders example, served on every address of the container, so it
# needs an access token (`catgad run` refuses an open API off loopback): CATGAD_TOKEN.
cat >"$etc/catgad.yaml" <<CONFIG
# The image's default config: the orders example with one access token, CATGAD_TOKEN.
# Mount your own config over this file (docs/operations.md).
catgad: 1
include: [$share/examples/orders.yaml]
service:
  auth:
    tokens:
      - name: operator
        secret: \${CATGAD_TOKEN}
        scopes: [commands, read, approve, manage]
CONFIG

"$prefix/bin/catgad" --help >/dev/null
