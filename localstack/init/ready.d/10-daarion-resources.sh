#!/bin/bash
# LocalStack init hook (runs when LocalStack is ready): create template.yaml's resources.
# The repository is mounted at /opt/daarion by localstack/docker-compose.yml.
set -euo pipefail
PY=/opt/code/localstack/.venv/bin/python
[ -x "$PY" ] || PY=python3
AWS_ENDPOINT_URL=http://localhost:4566 "$PY" /opt/daarion/localstack/create_resources.py
