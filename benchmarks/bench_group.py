"""Group photos: small faces, many per photo. Photosearch's default vs the face_recognition CLI.

The album (deterministic, seed SEED) is made of:
- synthetic group canvases: 1-8 `lfw-devtrain` faces pasted on a 1-12 MP smooth, noisy
  background, all faces of one photo in one size bin (1.5-15% of the longer side), a quarter
  of them stored rotated with an EXIF orientation tag (as phones do);
- no-face images: empty canvases, plus `people/photoprism/no_face_expected/` and the real
  no-face group photos;
- the real group photos of `photos/group` with a face count in group_photos.csv.
People are drawn only from the *reporting* half of the identities (a hash of the name; the
other half is for calibration), each with a reference image never pasted in the album.

The album has two folders, `canvases/` (the synthetic 1-12 MP canvases, with and without
faces) and `real/` (the real group and no-face photos). Both tools run as command lines in this
one run: `face_recognition --cpus 2 known/ FOLDER/` on each folder (it does not recurse; it
prints one line per face it finds; encoding the references and matching are in its time), and
`photosearch index` then one `photosearch search --queries` of the references (both timed: the
references' encoding is part of the search) on the whole album, for every figure, and once
more on `canvases/` alone, for its speed. Detection recall: photosearch's boxes are matched to
the pasted faces; the CLI prints no boxes, so its recall is counted per photo (min(found,
pasted)), which can only flatter it.
Search counts (photo, person) pairs, per face-size bin and over all synthetic photos.

Usage: python benchmarks/bench_group.py [PHOTOS]   (PHOTOS synthetic canvases, default 120)
"""

from __future__ import annotations

import csv
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from common import machine_description, require_shared_data, search_matches
from PIL import Image

BIN = Path(sys.executable).parent
SEED = 13
BINS = ((0.015, 0.025), (0.025, 0.04), (0.04, 0.07), (0.07, 0.15))
FACE_OF_TILE = 0.45  # an LFW deep-funneled 250 px image's face is ~110 px wide
CPUS = 2
SUBALBUMS = ("canvases", "real")


def reporting_half(name: str) -> bool:
    """Identities for reporting (True) or for calibration (False), fixed by the name's hash."""
    return hashlib.sha256(name.encode()).digest()[0] % 2 == 1


def people(lfw: Path, rng: np.random.Generator, count: int) -> dict[str, list[Path]]:
    """`count` reporting-half people with at least 3 images: reference first, then the rest."""
    chosen = []
    for line in (lfw / "peopleDevTrain.txt").read_text().splitlines()[1:]:
        name, images = line.split("\t")
        if int(images) >= 3 and reporting_half(name):
            chosen.append(name)
    picked = rng.choice(sorted(chosen), size=min(count, len(chosen)), replace=False)
    return {str(n): sorted((lfw / str(n)).glob("*.jpg")) for n in sorted(picked)}


def background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    corners = rng.uniform(40, 220, size=(2, 2, 3))
    small = Image.fromarray(corners.astype(np.uint8)).resize((width, height), Image.BILINEAR)
    noise = rng.normal(0, 6, size=(height, width, 1))
    return Image.fromarray(np.clip(np.asarray(small) + noise, 0, 255).astype(np.uint8))


def canvas(rng, persons, out: Path, name: str, size_bin, faces: int) -> dict:
    """One synthetic photo; returns its truth (display-space face boxes and people)."""
    megapixels = rng.uniform(1, 12)
    aspect = rng.choice([4 / 3, 3 / 2, 16 / 9])
    width = int(np.sqrt(megapixels * 1e6 * aspect))
    height = int(width / aspect)
    if rng.random() < 0.3:
        width, height = height, width
    image = background(rng, width, height)
    placed: list[tuple[int, int, int, int]] = []
    who: list[str] = []
    for _ in range(faces * 20):
        if len(placed) == faces:
            break
        face = rng.uniform(*size_bin) * max(width, height)
        tile = int(face / FACE_OF_TILE)
        if tile >= min(width, height):
            continue
        x, y = int(rng.integers(0, width - tile)), int(rng.integers(0, height - tile))
        if any(x < r and x + tile > lft and y < b and y + tile > t for lft, t, r, b in placed):
            continue
        person = str(rng.choice(sorted(persons)))
        photo = persons[person][1 + int(rng.integers(0, len(persons[person]) - 1))]
        image.paste(Image.open(photo).convert("RGB").resize((tile, tile), Image.LANCZOS), (x, y))
        placed.append((x, y, x + tile, y + tile))
        who.append(person)
    path = out / f"{name}.jpg"
    if rng.random() < 0.25:  # stored rotated, displayed upright by EXIF orientation 6
        exif = Image.Exif()
        exif[0x0112] = 6
        image.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)
    else:
        image.save(path, quality=90)
    return {"tiles": placed, "people": who}


def build(data: Path, work: Path, photos: int) -> tuple[dict, dict, dict, dict]:
    rng = np.random.default_rng(SEED)
    persons = people(data / "lfw-devtrain", rng, 60)
    (work / "known").mkdir(parents=True)
    album, others = work / "album" / SUBALBUMS[0], work / "album" / SUBALBUMS[1]
    album.mkdir(parents=True)
    others.mkdir()
    for person, images in persons.items():
        Image.open(images[0]).save(work / "known" / f"{person}.jpg")
    synthetic, empty, real = {}, [], {}
    for i in range(photos):
        size_bin = BINS[i % len(BINS)]
        synthetic[f"syn{i:03d}"] = (
            size_bin,
            canvas(rng, persons, album, f"syn{i:03d}", size_bin, int(rng.integers(1, 9))),
        )
    for i in range(max(4, photos // 10)):
        canvas(rng, persons, album, f"empty{i:02d}", BINS[0], 0)
        empty.append(f"empty{i:02d}.jpg")
    nofaces = data / "photos" / "people" / "photoprism" / "no_face_expected"
    for path in sorted(nofaces.iterdir()):
        (others / f"noface_{path.name}").write_bytes(path.read_bytes())
        empty.append(f"noface_{path.name}")
    with (data / "photos" / "group" / "group_photos.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["expected_faces"] == "":
                continue
            name = "real_" + row["relative_path"].replace("/", "__")
            (others / name).write_bytes((data / "photos" / row["relative_path"]).read_bytes())
            if int(row["expected_faces"]) == 0:
                empty.append(name)
            else:
                real[name] = int(row["expected_faces"])
    return persons, synthetic, {"empty": empty}, real


def run_peer(work: Path, sub: str) -> tuple[float, dict[str, list[str]]]:
    start = time.perf_counter()
    out = subprocess.run(
        [
            str(BIN / "face_recognition"),
            "--cpus",
            str(CPUS),
            str(work / "known"),
            str(work / "album" / sub),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds = time.perf_counter() - start
    found: dict[str, list[str]] = defaultdict(list)
    for line in out.splitlines():
        path, _, name = line.rpartition(",")
        if path and name != "no_persons_found":
            found[Path(path).name].append(name)
    return seconds, found


def run_ours(work: Path, sub: str) -> tuple[float, dict, set]:
    """Index `sub` (a folder of the album), then search it for every reference: (seconds,
    boxes, pairs)."""
    env = {**os.environ, "PHOTOSEARCH_DATA_DIR": str(work / "data")}
    index = work / f"index-{sub.replace('/', '-')}"
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "photosearch"), "index", str(work / sub), "--index", str(index), "-q"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    references = {ref.stem: ref for ref in sorted((work / "known").iterdir())}
    pairs = search_matches(BIN / "photosearch", index, references, work, env)
    seconds = time.perf_counter() - start
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from photosearch.index.store import IndexReader

    _, faces = IndexReader(index).load()
    boxes: dict[str, list] = defaultdict(list)
    for row in faces.select(["photo", "left", "top", "right", "bottom"]).to_pylist():
        boxes[Path(row["photo"]).name].append(
            (row["left"], row["top"], row["right"], row["bottom"])
        )
    return seconds, boxes, pairs


def matched(tiles, found) -> int:
    """Pasted faces with a found box whose centre lies in the tile's middle half."""
    hits = 0
    for left, top, right, bottom in tiles:
        quarter = (right - left) / 4
        for fl, ft, fr, fb in found:
            cx, cy = (fl + fr) / 2, (ft + fb) / 2
            if left + quarter <= cx <= right - quarter and top + quarter <= cy <= bottom - quarter:
                hits += 1
                break
    return hits


def scores(found: set, truth: set) -> tuple[float, float, float]:
    hits = len(found & truth)
    p = hits / len(found) if found else 0.0
    r = hits / len(truth) if truth else 0.0
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


def f1(found: set, truth: set) -> str:
    return "P {:.3f}  R {:.3f}  F1 {:.3f}".format(*scores(found, truth))


def main() -> None:
    data = require_shared_data()
    if not (BIN / "face_recognition").exists():
        sys.exit("the peer is missing: run `make bench` (installs face_recognition --no-deps)")
    photos = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    ours_s, peer_s, counts = {}, {}, {}
    peer: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        persons, synthetic, empty, real = build(data, work, photos)
        for sub in SUBALBUMS:
            counts[sub] = len(list((work / "album" / sub).iterdir()))
        print(
            f"album: {sum(counts.values())} images ({len(synthetic)} synthetic, {len(real)} real "
            f"group, {len(empty['empty'])} no-face), {len(persons)} people; {machine_description()}"
        )
        ours_s["album"], ours, our_pairs = run_ours(work, "album")
        ours_s[SUBALBUMS[0]] = run_ours(work, f"album/{SUBALBUMS[0]}")[0]
        # Children's peak so far: before the peer runs, so this is photosearch's own.
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        for sub in SUBALBUMS:
            peer_s[sub], found = run_peer(work, sub)
            peer.update(found)
    truth = {(f"{n}.jpg", p) for n, (_, t) in synthetic.items() for p in t["people"]}
    peer_pairs = {(photo, n) for photo, names in peer.items() for n in names if n in persons}
    print(f"{'':19} faces found           search F1 (precision/recall)")
    print(f"{'face size':>12} {'faces':>6} {'ours':>7} {'peer':>7} {'ours':>18} {'peer':>18}")
    for size_bin in BINS:
        names = [n for n, (b, _) in synthetic.items() if b == size_bin]
        files = {f"{n}.jpg" for n in names}
        pasted = sum(len(synthetic[n][1]["tiles"]) for n in names)
        mine = sum(matched(synthetic[n][1]["tiles"], ours.get(f"{n}.jpg", [])) for n in names)
        theirs = sum(
            min(len(peer.get(f"{n}.jpg", [])), len(synthetic[n][1]["tiles"])) for n in names
        )
        bin_truth = {pair for pair in truth if pair[0] in files}
        searched = []
        for pairs in (our_pairs, peer_pairs):
            p, r, f = scores({pair for pair in pairs if pair[0] in files}, bin_truth)
            searched.append(f"{f:.3f} ({p:.2f}/{r:.2f})")
        label = f"{size_bin[0]:.1%}-{size_bin[1]:.1%}"
        print(
            f"{label:>12} {pasted:6d} {mine / pasted:7.3f} {theirs / pasted:7.3f} "
            f"{searched[0]:>18} {searched[1]:>18}"
        )
    expected = sum(real.values())
    print(
        f"real group photos: {expected} faces; photosearch "
        f"{sum(min(len(ours.get(n, [])), c) for n, c in real.items())}, face_recognition "
        f"{sum(min(len(peer.get(n, [])), c) for n, c in real.items())}"
    )
    print(
        f"false faces on {len(empty['empty'])} no-face images: photosearch "
        f"{sum(len(ours.get(n, [])) for n in empty['empty'])}, face_recognition "
        f"{sum(len(peer.get(n, [])) for n in empty['empty'])}"
    )
    print(
        f"search (synthetic photos): photosearch {f1(our_pairs, truth)};"
        f" face_recognition {f1(peer_pairs, truth)}"
    )
    print(
        f"images/s (photosearch index + search of {len(persons)} references; face_recognition "
        f"--cpus {CPUS}, references included):"
    )
    for label, subs in (
        (f"{SUBALBUMS[0]} (1-12 MP)", SUBALBUMS[:1]),
        (f"whole album ({'+'.join(SUBALBUMS)})", SUBALBUMS),
    ):
        images = sum(counts[sub] for sub in subs)
        mine = images / ours_s[SUBALBUMS[0] if len(subs) == 1 else "album"]
        theirs = images / sum(peer_s[sub] for sub in subs)
        print(
            f"  {label:>26}: {images:4d} images, photosearch {mine:5.2f}, face_recognition "
            f"{theirs:5.2f}: {mine / theirs:.2f}x"
        )
    print(f"photosearch peak RSS {peak} MB (index and search runs)")


if __name__ == "__main__":
    main()
