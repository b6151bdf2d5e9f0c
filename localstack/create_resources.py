"""Create template.yaml's queues, tables and secrets on a LocalStack (or any AWS-compatible) endpoint.

The same code the local stack runs against moto: one reading of the template, no second list.

    python localstack/create_resources.py --endpoint http://localhost:4566
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.resources import provision
from devstack.template import REGION


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL", "http://localhost:4566"))
    args = parser.parse_args()
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name=os.environ.get("AWS_DEFAULT_REGION", REGION),
    )
    clients = {s: session.client(s, endpoint_url=args.endpoint) for s in ("sqs", "dynamodb", "secretsmanager")}
    _, resolver, skipped = provision(
        clients,
        database_url=os.environ.get("DATABASE_URL"),
        internal_secret=os.environ.get("INTERNAL_SECRET", "dev-secret-token"),
    )
    for logical_id, ids in resolver.physical.items():
        if "Arn" in ids and ":lambda:" not in ids["Arn"]:
            print(f"{logical_id:<24} {ids['Ref']}")
    print(f"skipped (no local meaning): {', '.join(skipped)}")


if __name__ == "__main__":
    main()
