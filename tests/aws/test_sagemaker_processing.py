"""Indexing on SageMaker Processing, run by the local runner over an album in (moto) S3.

The job is the very CreateProcessingJob request `photosearch aws index` sends; the local runner
plays SageMaker (per simulated instance: /opt/ml remapped, config files, inputs sharded by key,
outputs uploaded) and the entry point indexes with the real engine. The bar: three simulated
instances give the same index as a local run over the same S3 album, also incrementally.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aws_server
import numpy as np
import pytest
from aws_server import REGION, create_bucket, point_boto_at
from click.testing import CliRunner

boto3 = pytest.importorskip("boto3", reason="boto3 (the aws extra) is not installed")
pytest.importorskip("s3fs", reason="s3fs (the aws extra) is not installed")

from photosearch.aws import jobs, local, processing  # noqa: E402
from photosearch.aws.clients import AwsError, make_client, make_session  # noqa: E402
from photosearch.cli.aws import aws  # noqa: E402
from photosearch.faces.engine import FaceEngine  # noqa: E402
from photosearch.index.indexer import index_album  # noqa: E402
from photosearch.index.store import IndexReader  # noqa: E402

moto_endpoint = aws_server.moto_endpoint

LFW = "multires/lfw_funneled_250_vs_150"
# album key -> shared photo: small ones (the engine's time dominates); 7 faces in all
ALBUM = {
    "lfw/Rob_Lowe_0001.jpg": f"{LFW}/Rob_Lowe_0001_250px.jpg",
    "lfw/Rob_Lowe_0002.jpg": f"{LFW}/Rob_Lowe_0002_150px.jpg",
    "lfw/Teresa_Williams.jpg": f"{LFW}/Teresa_Williams_0001_150px.jpg",
    "lfw/Nathalie_Baye.jpg": f"{LFW}/Nathalie_Baye_0002_150px.jpg",
    "people/Tom_Hanks.png": "people/insightface/lfw_named/Tom_Hanks/Tom_Hanks_54745.png",
    "group/two.jpg": "group/dlib/2008_001009.jpg",
}
BROKEN_KEY = "notes/broken.jpg"
ALBUM_BUCKET = "sm-album"
INDEX_BUCKET = "sm-embeddings"
S3_ALBUM = f"s3://{ALBUM_BUCKET}/photos"
LOCAL_INDEX = f"s3://{INDEX_BUCKET}/indexes/local-run"
JOB_INDEX = f"s3://{INDEX_BUCKET}/indexes/job-run"


@pytest.fixture(scope="module")
def s3_album(moto_endpoint: str, shared_data: Path, tmp_path_factory) -> Iterator[object]:
    """The album in S3 (six photos and an unreadable file), AWS variables pointing at moto."""
    with pytest.MonkeyPatch.context() as patch:
        point_boto_at(patch, moto_endpoint, tmp_path_factory.mktemp("aws"))
        s3 = make_client(make_session(), "s3")
        for bucket in (ALBUM_BUCKET, INDEX_BUCKET):
            create_bucket(s3, bucket)
        for key, source in ALBUM.items():
            s3.upload_file(str(shared_data / "photos" / source), ALBUM_BUCKET, f"photos/{key}")
        s3.put_object(Bucket=ALBUM_BUCKET, Key=f"photos/{BROKEN_KEY}", Body=b"a text file")
        yield s3


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(device="cpu")


def assert_same_index(expected_location: str, actual_location: str) -> None:
    """Same photos (every column, stamps and fingerprints included), faces and descriptors."""
    expected = IndexReader(expected_location).snapshot()
    actual = IndexReader(actual_location).snapshot()
    assert actual.manifest.model_id == expected.manifest.model_id
    assert actual.manifest.album == expected.manifest.album
    assert actual.manifest.stats == expected.manifest.stats
    assert (
        actual.photos.sort_by("photo").to_pylist() == expected.photos.sort_by("photo").to_pylist()
    )

    def faces(snapshot):
        rows = snapshot.faces.to_pylist()
        order = sorted(range(len(rows)), key=lambda i: (rows[i]["photo"], rows[i]["face"]))
        return [rows[i] for i in order], snapshot.descriptors[order]

    expected_faces, expected_descriptors = faces(expected)
    actual_faces, actual_descriptors = faces(actual)
    assert len(actual_faces) == len(expected_faces) > 0
    for mine, theirs in zip(actual_faces, expected_faces, strict=True):
        score = mine.pop("score"), theirs.pop("score")
        assert mine == theirs  # photo, face number, box and landmarks: exactly
        assert score[0] == pytest.approx(score[1], abs=1e-6)
    # Batches of different photos: float sums in another order, nothing more.
    np.testing.assert_allclose(actual_descriptors, expected_descriptors, atol=1e-5)


def run_job(
    s3, engine, job_name: str, instances: int, index: str = JOB_INDEX, **options
) -> jobs.IndexRun:
    return jobs.run_index_job(
        S3_ALBUM,
        index,
        s3=s3,
        region=REGION,
        job_name=job_name,
        local_instances=instances,
        engine=engine,
        report=lambda line: None,
        **options,
    )


def test_three_instances_give_the_index_of_a_local_run(s3_album, engine) -> None:
    local_stats = index_album(S3_ALBUM, LOCAL_INDEX, engine=engine, report=lambda line: None)
    assert local_stats.indexed == len(ALBUM) and local_stats.unreadable == 1

    run = run_job(s3_album, engine, "photosearch-index-first", 3, keep_job_files=True)

    assert run.status == "Completed"
    assert run.planned == run.listed == len(ALBUM) + 1 and run.unchanged == 0
    assert run.merge.merged == len(ALBUM) + 1 and run.merge.missing == []
    assert run.merge.unreadable == 1 and run.merge.parts == 3
    assert_same_index(LOCAL_INDEX, JOB_INDEX)

    # Sharded by key: each instance got its own third of the planned photos, nothing twice.
    hosts = {summary["host"]: summary for summary in run.instances}
    assert sorted(hosts) == ["algo-1", "algo-2", "algo-3"]
    layout = processing.JobLayout(JOB_INDEX, "photosearch-index-first")
    tables, _ = processing.read_parts(layout.shards_uri)
    per_instance = [set(table.column("photo").to_pylist()) for table in tables]
    assert sorted(len(keys) for keys in per_instance) == [2, 2, 3]
    assert set.union(*per_instance) == {*ALBUM, BROKEN_KEY}
    assert sum(len(keys) for keys in per_instance) == len(ALBUM) + 1
    assert sorted(summary["photos"] for summary in hosts.values()) == [2, 2, 3]
    # The job's inputs as SageMaker reads them: a manifest file of the planned keys.
    manifest = json.loads(
        s3_album.get_object(
            Bucket=INDEX_BUCKET,
            Key="indexes/job-run/_jobs/photosearch-index-first/input/album.manifest",
        )["Body"].read()
    )
    assert manifest[0] == {"prefix": f"{S3_ALBUM}/"} and sorted(manifest[1:]) == sorted(
        [*ALBUM, BROKEN_KEY]
    )
    processing.remove_job_files(layout)


def test_rerun_sends_only_new_and_changed_photos(s3_album, engine, shared_data) -> None:
    """Through the CLI: a photo added, one deleted, one replaced; then nothing to do."""
    if IndexReader(JOB_INDEX).manifest() is None:
        pytest.skip("needs the index built by the previous test")
    photos = shared_data / "photos"
    s3_album.upload_file(
        str(photos / LFW / "Mary_Katherine_Smart_0001_150px.jpg"),
        ALBUM_BUCKET,
        "photos/lfw/Mary.jpg",
    )
    s3_album.delete_object(Bucket=ALBUM_BUCKET, Key="photos/lfw/Nathalie_Baye.jpg")
    s3_album.upload_file(  # the unreadable file is now a photo
        str(photos / LFW / "Rob_Lowe_0001_150px.jpg"), ALBUM_BUCKET, f"photos/{BROKEN_KEY}"
    )
    local_stats = index_album(S3_ALBUM, LOCAL_INDEX, engine=engine, report=lambda line: None)
    assert (local_stats.indexed, local_stats.deleted) == (2, 1)

    result = CliRunner().invoke(
        aws,
        ["index", S3_ALBUM, "--index", JOB_INDEX, "--local-instances", "3", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "Completed"
    assert (run["listed"], run["planned"], run["unchanged"]) == (7, 2, 5)
    assert run["merge"]["merged"] == 2 and run["merge"]["deleted"] == 1
    assert_same_index(LOCAL_INDEX, JOB_INDEX)
    # The merged job's files are gone; the album is up to date: no job at all.
    assert not s3_album.list_objects_v2(Bucket=INDEX_BUCKET, Prefix="indexes/job-run/_jobs/").get(
        "Contents"
    )
    again = run_job(s3_album, engine, "photosearch-index-third", 3)
    assert (again.status, again.planned, again.merge.merged, again.merge.deleted) == (
        "UpToDate",
        0,
        0,
        0,
    )


def test_a_failing_instance_fails_the_job_with_its_message(s3_album) -> None:
    """An engine other than the plan's: the entry point refuses, exit message and logs shown."""
    index = f"s3://{INDEX_BUCKET}/indexes/failing"
    other = FaceEngine(device="cpu", mirror=False)
    with pytest.raises(AwsError) as failure:
        run_job(s3_album, other, "photosearch-index-bad", 2, index=index, max_side=640)
    message = str(failure.value)
    assert "processing job photosearch-index-bad failed" in message
    assert "algo-1:" in message and "max_side" in message  # the instance's ExitMessage
    assert "/aws/sagemaker/ProcessingJobs" in message and "photosearch-index-bad/" in message
    assert IndexReader(index).manifest() is None  # nothing merged

    other = FaceEngine(device="cpu", max_side=640, detection_side=1000)
    with pytest.raises(AwsError) as failure:
        run_job(s3_album, other, "photosearch-index-bad-side", 1, index=index, max_side=640)
    assert "detection_side=1000" in str(failure.value)
    assert IndexReader(index).manifest() is None


def test_sharding_splits_the_key_ordered_objects() -> None:
    objects = [local.InputObject("b", f"k{i:02d}", f"k{i:02d}") for i in range(10)]
    shards = local.shard_objects(objects, 3)
    assert [len(shard) for shard in shards] == [3, 3, 4]
    assert [item for shard in shards for item in shard] == objects
    assert local.shard_objects(objects[:2], 3) == [[], [objects[0]], [objects[1]]]
