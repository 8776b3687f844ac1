"""The reference tokenizer: transformers 4.31.0's slow LlamaTokenizer, loaded as LISA's chat.py loads it.

stdin: {"folder": "<slow tokenizer folder>", "requests": [{"op": "prompt"|"encode"|"decode"|"tokens", ...}]}
stdout: {"transformers": "4.31.0", "results": [...]}   (run with models/export/tok431/venv run ref.py)
"""

import json
import sys
import warnings

warnings.filterwarnings("ignore")
import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

IMAGE_TOKEN_INDEX = -200


def tokenizer_image_token(prompt, tokenizer, image_token_index=IMAGE_TOKEN_INDEX):
    # LISA model/llava/mm_utils.py, verbatim logic
    prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]

    def insert_separator(X, sep):
        return [ele for sublist in zip(X, [sep] * len(X)) for ele in sublist][:-1]

    input_ids = []
    offset = 0
    if len(prompt_chunks) > 0 and len(prompt_chunks[0]) > 0 and prompt_chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])
    for x in insert_separator(prompt_chunks, [image_token_index] * (offset + 1)):
        input_ids.extend(x[offset:])
    return input_ids


def main():
    req = json.load(sys.stdin)
    # LISA chat.py: AutoTokenizer.from_pretrained(version, cache_dir=None, model_max_length=512,
    #                                            padding_side="right", use_fast=False); pad_token = unk_token
    tok = AutoTokenizer.from_pretrained(req["folder"], model_max_length=512, padding_side="right", use_fast=False)
    tok.pad_token = tok.unk_token
    out = []
    for r in req["requests"]:
        op = r["op"]
        if op == "prompt":
            out.append(tokenizer_image_token(r["text"], tok))
        elif op == "encode":
            out.append(tok(r["text"], add_special_tokens=r.get("add_bos", True)).input_ids)
        elif op == "decode":
            ids = [i for i in r["ids"] if i != IMAGE_TOKEN_INDEX]
            out.append(tok.decode(ids, skip_special_tokens=False))
        elif op == "tokens":
            out.append(tok.tokenize(r["text"]))
        elif op == "info":
            out.append(
                {
                    "class": type(tok).__name__,
                    "legacy": getattr(tok, "legacy", None),
                    "len": len(tok),
                    "added": tok.get_added_vocab(),
                    "special": tok.all_special_tokens,
                }
            )
        else:
            raise SystemExit(f"unknown op {op}")
    json.dump({"transformers": transformers.__version__, "results": out}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
