"""Publish the pages to the stack's bucket behind CloudFront (after `sam deploy`):

    python -m tools.deploy_web --stack ticketing-dev [--region eu-west-1]
    python -m tools.deploy_web --stack ticketing-dev --out .web-dist --dry-run   # build only

Uploads web/app (the vendored libraries included: run `make web` first) under `app/`, with a
config.json naming the API and Cognito's hosted UI from the stack's outputs, then
invalidates `/app/*`. web/local (the card form that pays through the local Stripe stand-in)
is never part of it: on AWS the buying page uses Stripe Elements, loaded from Stripe."""

from __future__ import annotations

import argparse
import json
import mimetypes
import shutil
import sys
import time
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parent.parent / "web" / "app"
TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".json": "application/json",
         ".webmanifest": "application/manifest+json", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}


def site_config(outputs: dict[str, str]) -> dict[str, Any]:
    return {
        "mode": "aws",
        "api": outputs["ApiUrl"].rstrip("/"),
        "cognito": {"domain": outputs["HostedUiDomain"], "client_id": outputs["UserPoolClientId"]},
    }


def build(out: Path, outputs: dict[str, str], app: Path = APP) -> list[Path]:
    """The files to publish, in `out` (emptied first); paths relative to it."""
    if not (app / "vendor" / "jsQR.js").is_file():
        raise SystemExit("deploy_web: web/app/vendor is empty: run `make web` first")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(app, out, ignore=shutil.ignore_patterns(".built", "*.map"))
    (out / "config.json").write_text(json.dumps(site_config(outputs)))
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())


def stack_outputs(session: Any, stack: str) -> dict[str, str]:
    described = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy_web")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--region")
    parser.add_argument("--out", default=".web-dist")
    parser.add_argument("--dry-run", action="store_true", help="build the folder, upload nothing")
    args = parser.parse_args(argv)

    import boto3

    session = boto3.Session(region_name=args.region)
    outputs = stack_outputs(session, args.stack)
    out = Path(args.out)
    files = build(out, outputs)
    print(f"{len(files)} files in {out}")
    if args.dry_run:
        return 0
    s3 = session.client("s3")
    for relative in files:
        kind = TYPES.get(relative.suffix) or mimetypes.guess_type(relative.name)[0] or "application/octet-stream"
        s3.upload_file(str(out / relative), outputs["WebBucketName"], f"app/{relative.as_posix()}",
                       ExtraArgs={"ContentType": kind, "CacheControl": "no-cache"})
    session.client("cloudfront").create_invalidation(
        DistributionId=outputs["WebDistributionId"],
        InvalidationBatch={"Paths": {"Quantity": 1, "Items": ["/app/*"]}, "CallerReference": str(time.time())},
    )
    print(f"published: {outputs['WebUrl']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
