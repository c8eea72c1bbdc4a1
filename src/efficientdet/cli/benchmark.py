"""``efficientdet benchmark``: latency, throughput, parameters and MACs of a model."""

from __future__ import annotations

import argparse

from efficientdet.cli.options import add_model_options
from efficientdet.config import PRECISIONS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="latency (median, p90), throughput, parameters and MACs",
                       description="Time the network alone and end to end (uint8 image -> detections) per batch size; "
                                   "print a table and one JSON line per configuration.")
    add_model_options(p, "weights to load (post-processing time depends on the weights); a checkpoint of this "
                         "library records its architecture, so --model is then optional")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1], metavar="N", help="default 1")
    p.add_argument("--image-size", type=int, nargs="+", metavar="PX", help="input H W (or one size); default the "
                                                                           "model's")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    p.add_argument("--dtype", choices=PRECISIONS, default="float32")
    p.add_argument("--optimize", action=argparse.BooleanOptionalAction, default=None,
                   help="torch backend: BatchNorm folded into the convs, copy-free TF padding (same outputs; "
                        "default: on for the CPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (default: with --optimize)")
    p.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                   choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                   help="torch.compile the network (optional mode; reduce-overhead uses CUDA graphs on GPUs)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="onnxruntime exports the model to ONNX first, cached for later runs (or give --onnx)")
    p.add_argument("--onnx", help="with --backend onnxruntime: an exported file to time")
    p.add_argument("--threads", type=int, help="intra-op threads (default: the library's default)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--iters", type=int, default=10, help="timed runs (default 10)")
    p.add_argument("--stages", nargs="+", choices=("network", "end_to_end"), default=["network", "end_to_end"])
    p.add_argument("--json", action="store_true", help="only the JSON lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from efficientdet.benchmark import benchmark, format_table
    from efficientdet.errors import ConfigError

    size = None
    if args.image_size is not None:
        if len(args.image_size) not in (1, 2):
            raise ConfigError(f"--image-size takes one size or H W, got {args.image_size}")
        size = (args.image_size[0], args.image_size[-1])
    results = benchmark(args.model, batch_sizes=args.batch_sizes, image_size=size, device=args.device,
                        dtype=args.dtype, channels_last=args.channels_last, compile=args.compile,
                        optimize=args.optimize, backend=args.backend, threads=args.threads, warmup=args.warmup, iters=args.iters,
                        stages=args.stages, onnx_path=args.onnx, pretrained=args.pretrained,
                        checkpoint=args.checkpoint, spinning=False)
    if not args.json:
        print(format_table(results))
        print()
    for r in results:
        print(r.to_json())
    return 0
