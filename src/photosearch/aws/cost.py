"""What each way of running Photosearch on AWS costs for a given album and use.

Prices, assumptions and throughput figures come from prices.json (dated; measured figures say
where they were measured, estimates say so). The model is deliberately simple and explicit:

- indexing: photos / (photos/s per instance x instances) hours, plus each instance's start-up,
  times the instance's hourly price; or Rekognition's per-image price;
- searching, for `searches` spread over `sessions` bursts within `days`:
  serverless bills memory x seconds per request (plus a cold start per burst), nothing idle;
  async (GPU, scales to zero) bills an instance from the burst's first request until
  `async_idle_before_scale_in_seconds` after its last, plus its start-up;
  realtime-gpu bills an instance for every hour of the period;
  Rekognition bills each search call plus face storage;
- storage: the album and index in S3 for the period (the same for every SageMaker option).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "DAYS_PER_MONTH",
    "INDEX_BYTES_PER_FACE",
    "PRICES_PATH",
    "SECONDS_PER_HOUR",
    "Estimate",
    "Line",
    "Option",
    "Usage",
    "async_line",
    "default_sessions",
    "estimate",
    "format_estimate",
    "gpu_rate",
    "indexing_line",
    "load_prices",
    "processing_rate",
    "realtime_line",
    "rekognition_option",
    "serverless_line",
    "storage_line",
]

PRICES_PATH = Path(__file__).with_name("prices.json")
SECONDS_PER_HOUR = 3600.0
DAYS_PER_MONTH = 30.0
INDEX_BYTES_PER_FACE = 700  # a Parquet row: descriptor, box, landmarks, photo key


@cache
def load_prices(path: Path = PRICES_PATH) -> dict[str, Any]:
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Usage:
    photos: int
    searches: int
    days: float
    sessions: int  # bursts of searching (default: one a day)
    processing_instance: str = "ml.g4dn.xlarge"
    instances: int = 1
    hosting_instance: str = "ml.g4dn.xlarge"
    gpu_photos_per_second: float | None = None  # override the table's figure


@dataclass
class Line:
    """One cost item: what, how much, and how it was computed."""

    item: str
    dollars: float
    detail: str


@dataclass
class Option:
    name: str
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(line.dollars for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "option": self.name,
            "total": round(self.total, 4),
            "lines": [
                {"item": line.item, "dollars": round(line.dollars, 4), "detail": line.detail}
                for line in self.lines
            ],
            "notes": self.notes,
        }


@dataclass
class Estimate:
    usage: Usage
    prices_date: str
    region: str
    options: list[Option]
    figures: list[str]  # the throughput figures used, with their source

    def cheapest(self) -> Option:
        return min(self.options, key=lambda option: option.total)

    def to_json(self) -> dict[str, Any]:
        return {
            "usage": vars(self.usage),
            "prices_date": self.prices_date,
            "region": self.region,
            "options": [option.to_json() for option in self.options],
            "figures": self.figures,
        }


def _hours(seconds: float) -> float:
    return seconds / SECONDS_PER_HOUR


def gpu_rate(usage: Usage, prices: dict[str, Any]) -> tuple[float, str]:
    if usage.gpu_photos_per_second:
        return usage.gpu_photos_per_second, "given on the command line"
    table = prices["throughput"]["gpu_photos_per_second"]
    entry = table.get(usage.processing_instance) or table["ml.g4dn.xlarge"]
    return float(entry["value"]), entry["source"]


def processing_rate(instance: str, usage: Usage, prices: dict[str, Any]) -> tuple[float, str]:
    """Photos per second of one processing instance of this type."""
    from photosearch.aws.sagemaker_common import is_gpu_instance

    if is_gpu_instance(instance):
        return gpu_rate(usage, prices)
    per_vcpu = prices["throughput"]["cpu_photos_per_second_per_vcpu"]
    vcpus = prices["assumptions"]["photo_instance_vcpus"].get(instance, 4)
    return float(per_vcpu["value"]) * vcpus, f"{vcpus} vCPUs x {per_vcpu['source']}"


def indexing_line(instance: str, usage: Usage, prices: dict[str, Any]) -> Line:
    rate, _ = processing_rate(instance, usage, prices)
    hourly = prices["sagemaker"]["processing_per_hour"][instance]
    startup = prices["assumptions"]["processing_instance_startup_seconds"]
    per_instance = usage.photos / (rate * usage.instances) + startup
    dollars = usage.instances * _hours(per_instance) * hourly
    return Line(
        f"index {usage.photos} photos",
        dollars,
        f"Processing job, {usage.instances} x {instance} at ${hourly}/h, {rate:g} photos/s each, "
        f"~{per_instance / 60:.0f} min incl. {startup / 60:.0f} min start-up",
    )


def storage_line(usage: Usage, prices: dict[str, Any]) -> Line:
    assumptions = prices["assumptions"]
    faces = usage.photos * assumptions["faces_per_photo"]
    gigabytes = usage.photos * assumptions["photo_megabytes"] * 1e6 + faces * INDEX_BYTES_PER_FACE
    gigabytes /= 1e9
    months = usage.days / DAYS_PER_MONTH
    requests = usage.photos * 2 / 1000  # each photo put once and read once by indexing
    dollars = gigabytes * months * prices["s3"]["storage_per_gb_month"]
    dollars += requests * (prices["s3"]["put_per_1000"] + prices["s3"]["get_per_1000"])
    return Line(
        "S3 storage",
        dollars,
        f"{gigabytes:.1f} GB (album at {assumptions['photo_megabytes']} MB/photo + index) for "
        f"{usage.days:g} days, plus one PUT and one GET per photo",
    )


def serverless_line(usage: Usage, prices: dict[str, Any]) -> Line:
    assumptions = prices["assumptions"]
    memory = assumptions["serverless_memory_gb"]
    per_search = prices["throughput"]["search_seconds_cpu"]["value"]
    seconds = usage.searches * per_search
    seconds += usage.sessions * assumptions["serverless_cold_start_billed_seconds"]
    data_gb = usage.searches * assumptions["reference_megabytes"] / 1000
    dollars = seconds * memory * prices["sagemaker"]["serverless_per_gb_second"]
    dollars += data_gb * prices["sagemaker"]["serverless_data_per_gb"]
    return Line(
        f"{usage.searches} searches",
        dollars,
        f"serverless {memory:g} GB, {per_search:g} s per search + "
        f"{assumptions['serverless_cold_start_billed_seconds']} s cold start per session, "
        "nothing while idle",
    )


def async_line(usage: Usage, prices: dict[str, Any]) -> Line:
    assumptions = prices["assumptions"]
    hourly = prices["sagemaker"]["hosting_per_hour"][usage.hosting_instance]
    per_search = prices["throughput"]["search_seconds_gpu"]["value"]
    per_session = (
        assumptions["async_scale_out_seconds"]
        + assumptions["async_idle_before_scale_in_seconds"]
        + per_search * usage.searches / max(1, usage.sessions)
    )
    dollars = usage.sessions * _hours(per_session) * hourly
    return Line(
        f"{usage.searches} searches",
        dollars,
        f"async {usage.hosting_instance} at ${hourly}/h, scaled to zero between sessions: "
        f"~{per_session / 60:.0f} min billed per session "
        f"(start-up + {assumptions['async_idle_before_scale_in_seconds'] / 60:.0f} min idle "
        "before scale-in)",
    )


def realtime_line(usage: Usage, prices: dict[str, Any]) -> Line:
    hourly = prices["sagemaker"]["hosting_per_hour"][usage.hosting_instance]
    hours = usage.days * 24
    return Line(
        f"{usage.searches} searches",
        hours * hourly,
        f"realtime {usage.hosting_instance} at ${hourly}/h, billed all {hours:g} h it exists",
    )


def rekognition_option(usage: Usage, prices: dict[str, Any]) -> Option:
    rekognition = prices["rekognition"]
    faces = usage.photos * prices["assumptions"]["faces_per_photo"]
    months = max(usage.days / DAYS_PER_MONTH, 1 / DAYS_PER_MONTH)
    option = Option("AWS Rekognition (managed alternative)")
    option.lines.append(
        Line(
            f"index {usage.photos} photos",
            usage.photos * rekognition["image_api_per_call"],
            f"IndexFaces, ${rekognition['image_api_per_call']} per photo",
        )
    )
    option.lines.append(
        Line(
            f"{usage.searches} searches",
            usage.searches * rekognition["image_api_per_call"],
            f"SearchFacesByImage, ${rekognition['image_api_per_call']} per search",
        )
    )
    option.lines.append(
        Line(
            "face storage",
            faces * months * rekognition["face_storage_per_face_month"],
            f"~{faces:.0f} faces at ${rekognition['face_storage_per_face_month']}/face-month",
        )
    )
    option.lines.append(storage_line(usage, prices))
    option.notes.append(
        "a different face model: results differ from a local photosearch run; photos must "
        "be in S3 and faces live in a Rekognition collection"
    )
    return option


def estimate(usage: Usage, prices: dict[str, Any] | None = None) -> Estimate:
    """Every deployment choice for this usage, with its cost items."""
    prices = prices or load_prices()
    if usage.photos < 0 or usage.searches < 0 or usage.days <= 0 or usage.sessions < 1:
        raise ValueError("photos and searches must be >= 0, days > 0 and sessions >= 1")
    indexing = indexing_line(usage.processing_instance, usage, prices)
    storage = storage_line(usage, prices)
    options = []
    for name, search, note in (
        (
            "SageMaker: GPU indexing job + serverless search (recommended for sparse use)",
            serverless_line(usage, prices),
            "CPU search: a few seconds per search, plus a cold start after idle periods",
        ),
        (
            "SageMaker: GPU indexing job + async GPU endpoint scaled to zero",
            async_line(usage, prices),
            "the first search of a session waits ~5-8 min for an instance",
        ),
        (
            "SageMaker: GPU indexing job + realtime GPU endpoint",
            realtime_line(usage, prices),
            "fastest answers, billed every hour it exists: undeploy when done",
        ),
    ):
        option = Option(name, [indexing, search, storage], [note])
        options.append(option)
    options.append(rekognition_option(usage, prices))
    # Every choice needs the web app too: hosted on AWS, paused between sessions.
    from photosearch.aws.hosting_cost import hosting_lines, hosting_rates

    paused, always = hosting_lines(usage.searches, usage.days, usage.sessions, prices)
    hosting = Line(
        "app hosting, paused between sessions",
        sum(dollars for _, dollars, _ in paused),
        "; ".join(f"{item} ${dollars:.2f} ({detail})" for item, dollars, detail in paused),
    )
    for option in options:
        option.lines.append(hosting)
    rates = hosting_rates(prices)
    rate, rate_source = processing_rate(usage.processing_instance, usage, prices)
    figures = [
        f"indexing: {rate:g} photos/s per {usage.processing_instance} ({rate_source})",
        "search on CPU: {value:g} s ({source})".format(
            **prices["throughput"]["search_seconds_cpu"]
        ),
        "search on GPU: {value:g} s ({source})".format(
            **prices["throughput"]["search_seconds_gpu"]
        ),
        f"app hosting ({prices['hosting']['date']} prices): ${rates.running_per_hour:.4f}/h "
        f"running, ${rates.paused_per_hour:.4f}/h paused (load balancer and secret); always on "
        f"for these {usage.days:g} days: ${sum(d for _, d, _ in always):.2f}; "
        f"{prices['hosting']['hours_per_session']:g} h of app per session assumed",
    ]
    return Estimate(usage, prices["date"], prices["region"], options, figures)


def format_estimate(result: Estimate) -> str:
    """The estimate as plain text: one block per option, cheapest marked."""
    usage = result.usage
    cheapest = result.cheapest()
    lines = [
        f"{usage.photos} photos, {usage.searches} searches in {usage.sessions} "
        f"session{'s' if usage.sessions != 1 else ''} over {usage.days:g} days "
        f"(prices: {result.region}, {result.prices_date}; USD)",
        "",
    ]
    for option in result.options:
        marker = "  <- cheapest" if option is cheapest else ""
        lines.append(f"${option.total:10.2f}  {option.name}{marker}")
        for line in option.lines:
            lines.append(f"    ${line.dollars:9.3f}  {line.item}: {line.detail}")
        for note in option.notes:
            lines.append(f"                note: {note}")
        lines.append("")
    lines.append("figures used:")
    lines.extend(f"  {figure}" for figure in result.figures)
    return "\n".join(lines)


def default_sessions(days: float) -> int:
    return max(1, math.ceil(days))
