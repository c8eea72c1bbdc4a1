"""``efficientdet export``: one graph from uint8 images to padded detections (ONNX, torch.export, TorchScript)."""

from __future__ import annotations

import argparse
import os

from efficientdet.cli.options import add_model_options, add_output_option
from efficientdet.config import NmsMethod, choices


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model with normalisation, decoding and NMS inside",
                       description="Export a detector as one graph: uint8 images [B, 3, H, W] (letterboxed) in; "
                                   "boxes [B, D, 4] (xyxy input pixels), scores [B, D], labels [B, D] (-1 padding) "
                                   "and num_detections [B] out.")
    add_model_options(p, "weights file (.safetensors / .pth)")
    p.add_argument("--format", choices=("onnx", "torchscript", "pt2", "executorch", "tflite", "mediapipe"),
                   default="onnx", help="default onnx; executorch: a .pte program for XNNPACK (needs executorch); "
                   "tflite: LiteRT (needs litert-torch); mediapipe: LiteRT with MediaPipe ObjectDetector metadata "
                   "(also needs mediapipe)")
    add_output_option(p, "output file (default: <model>.<onnx|torchscript|pt2|pte|tflite>)", metavar="FILE")
    p.add_argument("--image-size", type=int, nargs="+", metavar="PX", help="input H W (or one size); default the "
                                                                           "model's")
    p.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size; TorchScript is "
                                                      "traced at a fixed batch (default 1)")
    p.add_argument("--nms", choices=choices(NmsMethod), default="hard",
                   help="hard (default; ONNX NonMaxSuppression) or soft (Gaussian, unrolled loop: larger and slower)")
    p.add_argument("--max-detections", type=int, help="padded output rows D per image (default: the model's, 100)")
    p.add_argument("--score-threshold", type=float, help="drop candidates at or below this score (default: the "
                                                         "model's)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18, at least 17)")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="ONNX exporter (default auto: dynamo for hard NMS, the TorchScript-based one for soft NMS, "
                        "which it converts in seconds instead of minutes)")
    p.add_argument("--device", default="cpu", help="where to trace (cpu default; cuda for GPU TorchScript / pt2)")
    p.add_argument("--input", choices=("batch", "raw"), default="batch",
                   help="batch (default): letterboxed uint8 [B, 3, H, W]; raw: one decoded uint8 [H, W, 3] image of "
                        "any size, letterboxed inside the graph, boxes in its pixels")
    p.add_argument("--half", action="store_true",
                   help="tflite / mediapipe: float16 weights (half the file; computed in float32)")
    p.add_argument("--int8", action="store_true",
                   help="ONNX only: int8 post-training quantisation (onnxruntime QDQ) of the network, calibrated on "
                        "--calibration-data; post-processing stays float32")
    p.add_argument("--calibration-data", metavar="DATA",
                   help="with --int8: a dataset (COCO json, VOC / YOLO folder, CSV ...) or a folder of images")
    p.add_argument("--calibration-images", type=int, metavar="N",
                   help="with --int8: calibration images, spread over the data (default 100)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from efficientdet.errors import ConfigError
    from efficientdet.export import EXPORT_FORMATS, export_model, read_metadata
    from efficientdet.predict import load_model, resolve_device

    size = None
    if args.image_size is not None:
        if len(args.image_size) not in (1, 2):
            raise ConfigError(f"--image-size takes one size or H W, got {args.image_size}")
        size = (args.image_size[0], args.image_size[-1])
    if args.int8 and (args.format != "onnx" or args.calibration_data is None):
        raise ConfigError("--int8 quantises ONNX files: use --format onnx and give --calibration-data DATA (a "
                          "dataset or a folder of your images)")
    if not args.int8 and (args.calibration_data is not None or args.calibration_images is not None):
        raise ConfigError("--calibration-data / --calibration-images calibrate --int8; add --int8")
    model = load_model(args.model, args.checkpoint, pretrained=args.pretrained)
    model.to(resolve_device(args.device))
    out = args.output or f"{model.config.name}{EXPORT_FORMATS[args.format].suffix}"
    path = export_model(model, out, args.format, image_size=size, batch=args.batch, nms=args.nms,
                        max_detections=args.max_detections, score_threshold=args.score_threshold, opset=args.opset,
                        exporter=args.exporter, input=args.input, half=args.half)
    if args.int8:
        from efficientdet.exporters.quantize import quantize_onnx

        float_path = path.with_name(path.stem + ".float32.onnx")
        os.replace(path, float_path)
        try:
            quantize_onnx(float_path, path, args.calibration_data, args.calibration_images)
        finally:
            float_path.unlink()
    meta = read_metadata(path)
    h, w = meta["image_size"]
    pp = meta["postprocess"]
    batch = "B" if args.batch == "dynamic" and args.format not in ("torchscript", "executorch", "tflite", "mediapipe") else (args.batch if args.batch != "dynamic" else 1)
    print(f"wrote {path} ({args.format}, {path.stat().st_size / 2**20:.1f} MiB): {model.config.name}, "
          f"{meta['num_classes']} classes")
    if "quantization" in meta:
        q = meta["quantization"]
        print(f"  int8: {q['weights']} weights, {q['activations']} on {q['calibration_images']} images; float32: "
              f"{', '.join(q['float_parts'])}")
    if args.format == "mediapipe":
        print(f"  input  image uint8 [1, {h}, {w}, 3] RGB; outputs location, category, score, number of detections "
              f"(MediaPipe ObjectDetector); {pp['nms']} NMS ({pp['mode']} mode)")
        print(f"  run it: mediapipe.tasks.vision.ObjectDetector.create_from_model_path('{path}')   (pad photos to "
              f"the input's aspect ratio first: see the README's Export and deploy section)")
        return 0
    if args.input == "raw":
        print(f"  input  image uint8 [H, W, 3] RGB, any size (letterboxed inside into {h} x {w})")
        print(f"  output boxes [{pp['max_detections']}, 4] xyxy image pixels, scores, labels (-1 = padding), "
              f"num_detections []; {pp['nms']} NMS ({pp['mode']} mode)")
        return 0
    print(f"  input  images uint8 [{batch}, 3, {h}, {w}] RGB, letterboxed (scale = min({h}/height, {w}/width), "
          f"top-left, padded)")
    print(f"  output boxes [{batch}, {pp['max_detections']}, 4] xyxy input pixels, scores, labels (-1 = padding), "
          f"num_detections; {pp['nms']} NMS ({pp['mode']} mode)")
    if args.format == "onnx":
        print(f"  run it: efficientdet predict IMAGES --checkpoint {path}   (or onnxruntime alone: see the README's "
              "Export and deploy section)")
    elif args.format == "executorch":
        print(f"  load it: from executorch.runtime import Runtime; Runtime.get().load_program('{path}')"
              f".load_method('forward').execute([images])   (metadata: {path}.json)")
    elif args.format == "tflite":
        print(f"  run it: ai_edge_litert.interpreter.Interpreter('{path}').get_signature_runner()(args_0=images)")
    elif args.format == "pt2":
        print(f"  load it: import torchvision; torch.export.load('{path}').module()(images)")
    else:
        print(f"  load it: import torchvision; torch.jit.load('{path}')(images)")
    return 0
