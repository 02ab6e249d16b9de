"""The app's HTTPS front without a domain: a CloudFront distribution before the load balancer.

Made through CloudFront's own API, not the hosting template: the distribution needs nothing
from the stack but the load balancer's DNS name (a stack output), and this way the same code
runs against AWS and the loopback moto server (whose CloudFormation fails on a distribution
read through GetAtt). It is found again by its comment. It caches nothing (every answer is per
user), forwards every viewer header, cookie and WebSocket, and adds a secret origin header
without which the load balancer answers 403, so nobody reaches the app around its HTTPS.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from photosearch.aws.clients import explained
from photosearch.storage.s3 import error_code

__all__ = [
    "ORIGIN_HEADER",
    "delete_distribution",
    "distribution_comment",
    "ensure_distribution",
    "find_distribution",
    "origin_secret",
]

ORIGIN_HEADER = "X-Origin-Verify"
# AWS managed policies: no caching (every answer is per user), and every viewer header, cookie
# and query string forwarded (Host included, so the app's same-origin check holds).
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER = "216adef6-5c7f-47e4-b989-5492eafa07d3"


def distribution_comment(name_prefix: str) -> str:
    return f"photosearch app ({name_prefix}-app)"


def find_distribution(cloudfront: Any, name_prefix: str) -> dict[str, Any] | None:
    """The app's CloudFront distribution (found by its comment), or None."""
    comment = distribution_comment(name_prefix)
    with explained("listing CloudFront distributions"):
        for page in cloudfront.get_paginator("list_distributions").paginate():
            for item in page.get("DistributionList", {}).get("Items", []) or []:
                if item.get("Comment") == comment:
                    return item
    return None


def origin_secret(cloudfront: Any, distribution_id: str) -> str | None:
    config = cloudfront.get_distribution_config(Id=distribution_id)["DistributionConfig"]
    for origin in config["Origins"].get("Items", []):
        for header in origin.get("CustomHeaders", {}).get("Items", []) or []:
            if header["HeaderName"] == ORIGIN_HEADER:
                return header["HeaderValue"]
    return None


def _distribution_config(name_prefix: str, origin_dns: str, origin_secret: str) -> dict:
    origin_id = f"{name_prefix}-app"
    methods = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    return {
        "CallerReference": f"{origin_id}-{int(time.time())}",
        "Comment": distribution_comment(name_prefix),
        "Enabled": True,
        "HttpVersion": "http2",
        "PriceClass": "PriceClass_100",
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": origin_id,
                    "DomainName": origin_dns,
                    "CustomHeaders": {
                        "Quantity": 1,
                        "Items": [{"HeaderName": ORIGIN_HEADER, "HeaderValue": origin_secret}],
                    },
                    "CustomOriginConfig": {
                        "HTTPPort": 80,
                        "HTTPSPort": 443,
                        "OriginProtocolPolicy": "http-only",
                        "OriginReadTimeout": 60,
                        "OriginKeepaliveTimeout": 60,
                    },
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": origin_id,
            "ViewerProtocolPolicy": "redirect-to-https",
            "AllowedMethods": {
                "Quantity": len(methods),
                "Items": methods,
                "CachedMethods": {"Quantity": 2, "Items": ["GET", "HEAD"]},
            },
            "Compress": False,
            "CachePolicyId": CACHING_DISABLED,
            "OriginRequestPolicyId": ALL_VIEWER,
        },
    }


def ensure_distribution(
    cloudfront: Any, name_prefix: str, origin_dns: str, origin_secret: str
) -> dict[str, Any]:
    """Create the distribution, or point the existing one at `origin_dns`; returns its summary."""
    found = find_distribution(cloudfront, name_prefix)
    config = _distribution_config(name_prefix, origin_dns, origin_secret)
    with explained("creating the CloudFront distribution"):
        if found is None:
            created = cloudfront.create_distribution(DistributionConfig=config)["Distribution"]
            return {"Id": created["Id"], "DomainName": created["DomainName"]}
        current = cloudfront.get_distribution_config(Id=found["Id"])
        origins = current["DistributionConfig"]["Origins"]["Items"]
        if origins[0]["DomainName"] != origin_dns or not current["DistributionConfig"]["Enabled"]:
            config["CallerReference"] = current["DistributionConfig"]["CallerReference"]
            cloudfront.update_distribution(
                Id=found["Id"], IfMatch=current["ETag"], DistributionConfig=config
            )
    return {"Id": found["Id"], "DomainName": found["DomainName"]}


def delete_distribution(cloudfront: Any, name_prefix: str) -> list[str]:
    """Disable, then delete the distribution; what was done, one line each."""
    done: list[str] = []
    found = find_distribution(cloudfront, name_prefix)
    if found is not None:
        with explained("deleting the CloudFront distribution"):
            current = cloudfront.get_distribution_config(Id=found["Id"])
            etag = current["ETag"]
            if current["DistributionConfig"]["Enabled"]:
                config = {**current["DistributionConfig"], "Enabled": False}
                etag = cloudfront.update_distribution(
                    Id=found["Id"], IfMatch=etag, DistributionConfig=config
                )["ETag"]
            try:
                cloudfront.delete_distribution(Id=found["Id"], IfMatch=etag)
                done.append(f"CloudFront distribution {found['Id']}")
            except ClientError as exc:
                if error_code(exc) != "DistributionNotDisabled":
                    raise
                done.append(
                    f"CloudFront distribution {found['Id']} disabled (AWS needs ~15 min before "
                    "it can be deleted: run `photosearch aws app undeploy` again)"
                )
    return done
