#!/usr/bin/env python3
"""tiny-mixtral-fim: tiny-mixtral with Qwen's fill-in-the-middle tokens, and llama.cpp's /infill answers for it.

1. The checkpoint: tiny-mixtral (../tiny-mixtral) loaded by transformers, its vocabulary grown from 512 to 520 by
   `resize_token_embeddings` (seeded), saved by `save_pretrained`; its tokenizer.json gains Qwen2.5-Coder's FIM
   tokens as special added tokens 512-517 (<|fim_prefix|>, <|fim_middle|>, <|fim_suffix|>, <|fim_pad|>,
   <|repo_name|>, <|file_sep|>); max_position_embeddings 8192, so that llama.cpp's default batch (2048) leaves room
   for extra context.
2. The goldens (cases.json): each case's request (to /infill, or /completion) and llama.cpp's answer to it: the
   prompt it built (detokenized with its special tokens), its length in tokens (`tokens_evaluated`), the greedy text,
   how many tokens it took and why it stopped (a grammar makes lines of code for the `n_indent` cases); and
   `grammar_cases`: llama.cpp's example grammars (its grammars/ directory) on /completion, greedy, with the tokens
   llama.cpp chose; and `probability_cases`: `n_probs` on /completion (PROB_CASES), whole and streamed. llama.cpp's
   server is built
   from llama-cpp-python's vendored source (LLAMA_SERVER), and reads this checkpoint written as GGUF by
   Deploy/peer/hf_to_gguf.py (a gpt2 vocabulary with the merges; GGUF_PY is that tree's gguf-py).

usage: LLAMA_SERVER=.../llama-server GGUF_PY=.../gguf-py python3 make.py [goldens]
"""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "tiny-mixtral")
FIM = ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
PORT = 8097

LONG_PREFIX = "".join(f"value_{i} = compute({i}, {i * 7 % 13})\n" for i in range(240))
LONG_SUFFIX = "".join(f"assert check(value_{i})\n" for i in range(120))
CASES = [
    {"name": "prefix-and-suffix", "input_prefix": "def add(a, b):\n    ", "input_suffix": "\n\nprint(add(1, 2))\n"},
    {"name": "prompt-and-extra", "input_prefix": "import util\n\ndef twice(x):\n    ", "input_suffix": "\n",
     "prompt": "return", "input_extra": [{"filename": "util.py", "text": "def sub(a, b):\n    return a - b\n"},
                                         {"filename": "README.md", "text": "Small helpers.\n"}]},
    {"name": "extra-without-filename", "input_prefix": "x = ", "input_suffix": "", "input_extra": [{"text": "y = 2\n"}]},
    {"name": "long-prefix-and-suffix-cut", "input_prefix": LONG_PREFIX, "input_suffix": LONG_SUFFIX, "prompt": "total = "},
    {"name": "tokens-in-prefix-special-text-unparsed", "input_prefix": ["s = '<|fim_pad|>'\n", 300, " t = "],
     "input_suffix": "# end <|file_sep|>\n", "prompt": "<|file_sep|>x"},
    {"name": "unicode", "input_prefix": "# Grüße, 世界 🙂\nname = \"", "input_suffix": "\"\nprint(name)\n"},
    {"name": "empty", "input_prefix": "", "input_suffix": ""},
    # llama.cpp's code-completion limit: a line indented less than n_indent ends the text (the grammar makes one).
    {"name": "n-indent-cuts-the-dedented-line", "input_prefix": "def f():\n", "input_suffix": "\n", "n_indent": 4, "n_predict": 40,
     "grammar": 'root ::= "    x = 1\\n    return x\\nprint(f())\\n"'},
    {"name": "completion-n-indent", "endpoint": "/completion", "prompt": "def f():", "n_indent": 4, "n_predict": 40,
     "grammar": 'root ::= "\\n    x = 1\\n\\ty = 2\\n  z = 3\\n"'},
    {"name": "completion-n-indent-off", "endpoint": "/completion", "prompt": "def f():", "n_predict": 40,
     "grammar": 'root ::= "\\n    x = 1\\n\\ty = 2\\n  z = 3\\n"'},
]


# n_probs on /completion: the chosen token's and the n most likely tokens' probabilities from the raw logits, per
# generated token (llama.cpp's `completion_probabilities`), whole and streamed; a token that leaves a character
# incomplete has no entry (the next one carries the character); EOS has one with empty text; a stop word's tokens are
# left out of the whole answer.
PROB_CASES = [
    {"name": "top-3", "prompt": "Once upon a time", "n_predict": 6, "n_probs": 3},
    {"name": "multi-byte-characters", "prompt": "x", "n_predict": 16, "n_probs": 2, "grammar": 'root ::= "Grüße 🙂 ok"'},
    {"name": "ends-at-eos", "prompt": "Say", "n_predict": 8, "n_probs": 1, "grammar": 'root ::= " ab"'},
    {"name": "stop-word", "prompt": "Count:", "n_predict": 10, "n_probs": 2, "grammar": 'root ::= " one two three"',
     "stop": ["two"]},
]
GRAMMARS = ["json.gbnf", "json_arr.gbnf", "arithmetic.gbnf", "list.gbnf", "chess.gbnf", "english.gbnf", "japanese.gbnf", "c.gbnf"]
GRAMMAR_PROMPTS = ["Answer:", "def f():", "x"]
# Special tokens a grammar could take as text (not EOS, which ends the text as it ends any).
SPECIAL = {0, 1} | set(range(512, 518))


def make_checkpoint():
    torch.manual_seed(23)
    model = transformers.AutoModelForCausalLM.from_pretrained(SOURCE, dtype=torch.float32)
    model.resize_token_embeddings(520)
    model.config.max_position_embeddings = 8192
    model.save_pretrained(HERE)
    for f in ["generation_config.json"]:
        shutil.copy(os.path.join(SOURCE, f), os.path.join(HERE, f))
    tok = json.load(open(os.path.join(SOURCE, "tokenizer.json")))
    for k, content in enumerate(FIM):
        tok["added_tokens"].append({"id": 512 + k, "content": content, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": True})
    json.dump(tok, open(os.path.join(HERE, "tokenizer.json"), "w"), ensure_ascii=False)
    config = json.load(open(os.path.join(SOURCE, "tokenizer_config.json")))
    config["model_max_length"] = 8192
    json.dump(config, open(os.path.join(HERE, "tokenizer_config.json"), "w"), indent=2)
    # The tokenizer as transformers reads it: the FIM tokens are single special tokens.
    t = transformers.AutoTokenizer.from_pretrained(HERE)
    assert t.convert_tokens_to_ids(FIM) == list(range(512, 518)), t.convert_tokens_to_ids(FIM)


def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=120))


def llama_cpp_goldens():
    gguf = "/tmp/tiny-mixtral-fim.gguf"
    subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "..", "Deploy", "peer", "hf_to_gguf.py"), HERE, gguf, "f32"],
                   check=True)
    server = subprocess.Popen([os.environ["LLAMA_SERVER"], "-m", gguf, "-c", "8192", "-np", "1", "-t", "2",
                               "--port", str(PORT), "--no-warmup"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if json.load(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2)).get("status") == "ok":
                    break
            except Exception:
                time.sleep(0.2)
        out = []
        for case in CASES:
            body = {"n_predict": 8, "temperature": 0, "cache_prompt": False, "seed": 1}
            body.update({k: v for k, v in case.items() if k not in ("name", "endpoint")})
            endpoint = case.get("endpoint", "/infill")
            r = post(endpoint, body)
            out.append({"name": case["name"], "endpoint": endpoint, "request": body, "prompt": r["prompt"],
                        "tokens_evaluated": r["tokens_evaluated"], "content": r["content"], "tokens_predicted": r["tokens_predicted"],
                        "stop_type": r["stop_type"], "has_new_line": r["has_new_line"]})
        # Grammars: llama.cpp's own example grammars (its grammars/ directory) on /completion, greedy. llama.cpp matches
        # a special token's text against the grammar (and leaves it out of the content); where it chose one, the
        # content before it is what the same request must start with here (decoded by the tokenizers library).
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(os.path.join(HERE, "tokenizer.json"))
        grammar_dir = os.path.join(os.environ["GGUF_PY"], "..", "grammars")
        grammar_cases = []
        for name in GRAMMARS:
            grammar = open(os.path.join(grammar_dir, name)).read()
            for prompt in GRAMMAR_PROMPTS:
                body = {"prompt": prompt, "grammar": grammar, "n_predict": 24, "temperature": 0, "cache_prompt": False,
                        "return_tokens": True}
                r = post("/completion", body)
                ids = r["tokens"]
                first_special = next((i for i, t in enumerate(ids) if t in SPECIAL), None)
                body.pop("return_tokens")
                grammar_cases.append({"grammar_file": name, "request": body, "content": r["content"], "tokens": ids,
                                      "tokens_predicted": r["tokens_predicted"], "stop_type": r["stop_type"],
                                      "chose_special_token": first_special is not None,
                                      "content_before_special": tok.decode(ids[:first_special]) if first_special is not None else r["content"]})
        prob_cases = []
        for case in PROB_CASES:
            body = {"temperature": 0, "cache_prompt": False}
            body.update({k: v for k, v in case.items() if k != "name"})
            r = post("/completion", body)
            req = urllib.request.Request(f"http://127.0.0.1:{PORT}/completion", data=json.dumps(dict(body, stream=True)).encode(),
                                         headers={"Content-Type": "application/json"})
            streamed = []
            for line in urllib.request.urlopen(req, timeout=120).read().decode().split("\n"):
                if line.startswith("data: ") and line[6:].strip() != "[DONE]":
                    streamed += json.loads(line[6:]).get("completion_probabilities", [])
            prob_cases.append({"name": case["name"], "request": body, "content": r["content"], "stop_type": r["stop_type"],
                               "completion_probabilities": r.get("completion_probabilities", []),
                               "streamed_completion_probabilities": streamed})
        props = json.load(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/props", timeout=10))
        settings = props.get("default_generation_settings", {})
        return {"llama_cpp": {"build": props.get("build_info"), "n_ctx": settings.get("n_ctx"), "n_batch": 2048, "n_predict": -1},
                "cases": out, "grammar_cases": grammar_cases, "probability_cases": prob_cases}
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    if sys.argv[1:] != ["goldens"]:   # `make.py goldens`: only llama.cpp's answers, for the checkpoint as it is
        make_checkpoint()
    goldens = llama_cpp_goldens()
    goldens["made_with"] = {"transformers": transformers.__version__, "torch": torch.__version__}
    json.dump(goldens, open(os.path.join(HERE, "cases.json"), "w"), indent=1, ensure_ascii=False)
