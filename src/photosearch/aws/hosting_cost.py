"""What hosting the web app on AWS costs: per hour running or paused, and for a use.

The hosting stack (infra/app-hosting.yaml) bills: the Fargate task while it runs (vCPU and
memory hours, plus its public IPv4 address), the load balancer every hour it exists (paused or
not), CloudFront per request and per GB sent, the password secret per month, and CloudWatch
logs per GB. Prices: the "hosting" block of prices.json (dated; entered by hand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "HostingRates",
    "hosting_lines",
    "hosting_rates",
]

HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class HostingRates:
    task_per_hour: float  # Fargate vCPU + memory + public IPv4, while running
    load_balancer_per_hour: float  # while the stack exists, paused or not
    secret_per_hour: float
    vcpus: float
    memory_gb: float

    @property
    def running_per_hour(self) -> float:
        return self.task_per_hour + self.load_balancer_per_hour + self.secret_per_hour

    @property
    def paused_per_hour(self) -> float:
        return self.load_balancer_per_hour + self.secret_per_hour


def hosting_rates(
    prices: dict[str, Any], vcpus: float | None = None, memory_gb: float | None = None
) -> HostingRates:
    table = prices["hosting"]
    vcpus = table["task_vcpus"] if vcpus is None else vcpus
    memory_gb = table["task_memory_gb"] if memory_gb is None else memory_gb
    task = (
        vcpus * table["fargate_per_vcpu_hour"]
        + memory_gb * table["fargate_per_gb_hour"]
        + table["public_ipv4_per_hour"]
    )
    balancer = table["alb_per_hour"] + table["alb_lcu_while_used"] * table["alb_per_lcu_hour"]
    return HostingRates(
        task, balancer, table["secret_per_month"] / HOURS_PER_MONTH, vcpus, memory_gb
    )


def hosting_lines(
    searches: int, days: float, sessions: int, prices: dict[str, Any]
) -> tuple[list[tuple[str, float, str]], list[tuple[str, float, str]]]:
    """(paused between sessions, always on): each a list of (item, dollars, detail)."""
    table = prices["hosting"]
    rates = hosting_rates(prices)
    hours = days * 24
    used_hours = min(hours, sessions * table["hours_per_session"])
    requests = searches * table["requests_per_search"]
    gigabytes = searches * table["megabytes_per_search"] / 1024
    traffic = (
        requests / 10_000 * table["cloudfront_per_10k_https_requests"]
        + gigabytes * table["cloudfront_data_per_gb"]
    )
    shared = [
        (
            "load balancer",
            hours * rates.load_balancer_per_hour,
            f"{hours:g} h x ${rates.load_balancer_per_hour:.4f}/h (billed paused too)",
        ),
        (
            "CloudFront",
            traffic,
            f"{requests:,} requests, {gigabytes:.2f} GB (within the free tier for most accounts)",
        ),
        ("password secret", hours * rates.secret_per_hour, f"${table['secret_per_month']}/month"),
    ]
    task = f"Fargate {rates.vcpus:g} vCPU / {rates.memory_gb:g} GB at ${rates.task_per_hour:.4f}/h"
    paused = [("app task", used_hours * rates.task_per_hour, f"{used_hours:g} h ({task})"), *shared]
    always = [("app task", hours * rates.task_per_hour, f"{hours:g} h ({task})"), *shared]
    return paused, always
