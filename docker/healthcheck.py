"""The image's health check: exit 0 when the daemon answers GET /healthz with 200.

Standard library only (the slim image has no curl). The port is the image's 8080 unless
CATGAD_HEALTHCHECK_URL names another address.
"""

import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("CATGAD_HEALTHCHECK_URL", "http://127.0.0.1:8080/healthz")


def main() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=3) as response:
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: GET {URL}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: GET {URL} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
