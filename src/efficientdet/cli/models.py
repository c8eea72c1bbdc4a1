"""``efficientdet models``: list registered models with their published weights and figures."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model names, their input size, parameters and published COCO mAP")
    p.add_argument("pattern", nargs="?", default="*",
                   help="shell-style filter, e.g. 'tf_efficientdet_d*' (no match: an error naming close ones)")
    p.add_argument("--pretrained", action="store_true", help="only models with published weights (which --pretrained "
                                                             "loads in the other commands)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.add_argument("--show", metavar="NAME", help="print the full config of one model as YAML")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from efficientdet.errors import ConfigError
    from efficientdet.registry import get_entry, list_models, suggest_models

    if args.show:
        import yaml

        print(yaml.safe_dump(get_entry(args.show).config.to_dict(), sort_keys=False), end="")
        return 0
    names = list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        close = [n for n in suggest_models(args.pattern) if n in list_models(pretrained=args.pretrained)]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        weights = " with published weights" if args.pretrained else ""
        raise ConfigError(f"no model{weights} matches {args.pattern!r}.{hint} `efficientdet models` lists them all")
    rows = []
    for name in names:
        entry = get_entry(name)
        c = entry.config
        w = entry.weights[0] if entry.weights else None
        rows.append({
            "name": name,
            "backbone": c.backbone.name,
            "image_size": list(c.image_size),
            "params_m": entry.params_m,
            "coco_map_val": w.map_val if w else None,
            "official_tf_map_val": w.map_tf_val if w else None,
            "weights": w.url if w else None,
        })
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    header = f"{'model':24s} {'backbone':24s} {'input':>9s} {'params':>7s} {'mAP':>5s} {'TF mAP':>6s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        size = "x".join(str(s) for s in r["image_size"])
        params = f"{r['params_m']:.2f}M" if r["params_m"] else "-"
        m = f"{r['coco_map_val']:.1f}" if r["coco_map_val"] else "-"
        mtf = f"{r['official_tf_map_val']:.1f}" if r["official_tf_map_val"] else "-"
        print(f"{r['name']:24s} {r['backbone']:24s} {size:>9s} {params:>7s} {m:>5s} {mtf:>6s}")
    print(f"\n{len(rows)} models; mAP: COCO val2017 mAP@[.5:.95] of the published weights (effdet's table), "
          "TF mAP: the official implementation's figure")
    return 0
