"""Face engine throughput: ours (PyTorch) against dlib-bin on the same photos, in one run.

The peer is the `face_recognition` library's CNN path (dlib's MMOD CNN detector, 5-point
landmarks, ResNet encoder), called through dlib-bin directly. Photos are shrunk to 640 px on
their longer side (640x480 class) and both engines get the same pixels.

Usage: python benchmarks/bench_engine.py [--photos N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from common import machine_description, require_shared_data, timed
from conftest import load_rgb_for_oracle, shared_photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=12, help="photos in the detector set")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (dlib-bin runs its networks on one core)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    require_shared_data()
    import torch

    torch.set_num_threads(args.threads)

    import dlib

    from photosearch.faces.align import face_chips
    from photosearch.faces.engine import FaceEngine
    from photosearch.faces.images import LoadedImage
    from photosearch.faces.models.registry import model_path

    paths = [p for p in shared_photos() if "no_face" not in str(p)]
    step = max(1, len(paths) // args.photos)
    images = [load_rgb_for_oracle(p, max_side=640) for p in paths[::step][: args.photos]]
    loaded = [
        LoadedImage(
            pixels=im,
            original_size=(im.shape[1], im.shape[0]),
            scale=1.0,
            format="RGB",
            source="bench",
        )
        for im in images
    ]
    engine = FaceEngine(device=args.device, upsample=0, max_side=None, mirror=False)
    engine.faces_for_images(loaded[:1])  # load models, warm up

    dlib_detector = dlib.cnn_face_detection_model_v1(str(model_path("detector")))
    dlib_shapes = dlib.shape_predictor(str(model_path("landmarks5")))
    dlib_encoder = dlib.face_recognition_model_v1(str(model_path("descriptor")))

    # 1. Detector alone, 640x480 class.
    ours_detect, _ = timed(lambda: [engine.detector.detect(im, upsample=0) for im in images])
    dlib_detect, _ = timed(lambda: [dlib_detector(im, 0) for im in images])

    # 2. Whole pipeline (detect + landmarks + chip + descriptor), images/s and faces/s.
    ours_full, our_faces = timed(lambda: engine.faces_for_images(loaded), repeat=2)
    face_count = sum(len(f) for f in our_faces)

    def dlib_pipeline():
        count = 0
        for im in images:
            for det in dlib_detector(im, 0):
                shape = dlib_shapes(im, det.rect)
                dlib_encoder.compute_face_descriptor(im, shape)
                count += 1
        return count

    dlib_full, dlib_face_count = timed(dlib_pipeline)

    # 3. Descriptor network alone on the same aligned chips (batch 32).
    chips = np.concatenate(
        [
            face_chips(im, engine.shape_predictor.predict_many(im, [f_box for f_box in boxes]))
            for im, boxes in ((im, [d.box for d in engine.detector.detect(im)]) for im in images)
            if boxes
        ]
    )
    chips = np.concatenate([chips] * max(1, 64 // len(chips)))[:64]
    ours_desc, _ = timed(lambda: engine.descriptor_net.compute(chips, mirror=False), repeat=3)
    dlib_chips = chips[:16]
    dlib_desc, _ = timed(lambda: [dlib_encoder.compute_face_descriptor(c) for c in dlib_chips])

    figures = {
        "machine": machine_description(),
        "device": engine.device,
        "photos": len(images),
        "faces": face_count,
        "dlib_faces": dlib_face_count,
        "detector_ms_per_image": {
            "ours": 1000 * ours_detect / len(images),
            "dlib": 1000 * dlib_detect / len(images),
        },
        "detector_speedup": dlib_detect / ours_detect,
        "descriptor_faces_per_s": {
            "ours": len(chips) / ours_desc,
            "dlib": len(dlib_chips) / dlib_desc,
        },
        "descriptor_speedup": (len(chips) / ours_desc) / (len(dlib_chips) / dlib_desc),
        "pipeline_images_per_s": {"ours": len(images) / ours_full, "dlib": len(images) / dlib_full},
        "pipeline_faces_per_s": {
            "ours": face_count / ours_full,
            "dlib": dlib_face_count / dlib_full,
        },
        "pipeline_speedup": dlib_full / ours_full,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"Face engine vs dlib-bin on {len(images)} photos (640 px class), {face_count} faces")
    print(f"machine: {figures['machine']}")
    d = figures["detector_ms_per_image"]
    print(
        f"detector:   ours {d['ours']:8.1f} ms/image  dlib {d['dlib']:8.1f} ms/image  "
        f"-> {figures['detector_speedup']:.1f}x"
    )
    d = figures["descriptor_faces_per_s"]
    print(
        f"descriptor: ours {d['ours']:8.1f} faces/s   dlib {d['dlib']:8.1f} faces/s   "
        f"-> {figures['descriptor_speedup']:.1f}x"
    )
    d, f = figures["pipeline_images_per_s"], figures["pipeline_faces_per_s"]
    print(
        f"pipeline:   ours {d['ours']:8.2f} images/s  dlib {d['dlib']:8.2f} images/s  "
        f"-> {figures['pipeline_speedup']:.1f}x  (faces/s: ours {f['ours']:.1f}, "
        f"dlib {f['dlib']:.1f})"
    )


if __name__ == "__main__":
    main()
