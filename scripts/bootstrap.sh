#!/usr/bin/env bash
# Prepare a fresh machine for `make demo` / `make test`: uv, the locked environment, and the
# few system packages the tests need. Prints nothing but progress; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

want_system_packages="${1:-}"

# Trust the system's certificate store (a site's TLS-inspecting proxy installs its CA there):
# uv otherwise uses its own bundled roots and refuses such a proxy.
export UV_SYSTEM_CERTS=1
if [ -z "${SSL_CERT_FILE:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
  export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
fi

# 1. uv: on PATH, or installed from PyPI into .cache/tools (no script from elsewhere)
if command -v uv >/dev/null 2>&1; then
  UV=$(command -v uv)
elif [ -x .cache/tools/bin/uv ]; then
  UV=.cache/tools/bin/uv
else
  echo "bootstrap: installing uv from PyPI into .cache/tools" >&2
  python3 -m pip install --quiet --disable-pip-version-check ${SSL_CERT_FILE:+--cert "$SSL_CERT_FILE"} \
    --target .cache/tools uv >&2
  UV=.cache/tools/bin/uv
fi

# 2. system packages the tests use (only when asked, and only where apt and root exist)
if [ "$want_system_packages" = "--system" ]; then
  missing=()
  command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # a CJK font, so that the browser tests' screenshots show Chinese, not boxes
  fc-list 2>/dev/null | grep -qi -e wqy -e "noto sans cjk" || missing+=(fonts-wqy-zenhei)
  command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "bootstrap: apt-get install ${missing[*]}" >&2
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    else
      echo "bootstrap: missing ${missing[*]} (not root or no apt): tests that need them skip" >&2
    fi
  fi
fi

# 3. the locked environment (never a downloaded interpreter: use the machine's Python)
UV_PYTHON_DOWNLOADS=never "$UV" sync --frozen --quiet >&2
echo "$UV"
