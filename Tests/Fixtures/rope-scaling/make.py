"""Logits of tiny fixture models with scaled RoPE, computed by transformers (float32, CPU, eager attention).

Each case of cases.json names a fixture (its weights and tokenizer are used as they are) and the rope settings to
put in its config.json, in the form the case gives: `rope_scaling` beside a top-level `rope_theta` (config files
written by transformers 4.x, as Qwen3's model cards tell users to add YaRN) or `rope_parameters` (5.x). The prompt
is the fixture's third golden prompt (40 tokens). Writes <case>.f32 (little-endian float32, [T, vocab]) and
goldens.json (per case: the config keys used, argmax per position, the largest |difference| from the unscaled
model's logits, so a case that changes nothing is visible). Run: python3 make.py (transformers 5.x, torch)."""
import json, os, shutil, tempfile
import torch
import transformers
from transformers import AutoModelForCausalLM

here = os.path.dirname(os.path.abspath(__file__))
cases = json.load(open(os.path.join(here, "cases.json")))
out = {"reference": {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
                     "compute_dtype": "float32", "device": "cpu", "attn_implementation": "eager"}, "cases": []}


def logits(directory, ids):
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


for case in cases:
    fixture = os.path.join(here, "..", case["fixture"])
    ids = json.load(open(os.path.join(fixture, "golden", "prompts.json")))[2]["ids"]
    config = json.load(open(os.path.join(fixture, "config.json")))
    config.pop("rope_parameters", None)
    config.pop("rope_scaling", None)
    config.update(case["config"])
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(fixture):
            if name.endswith(".safetensors") or name.startswith("tokenizer"):
                shutil.copy(os.path.join(fixture, name), tmp)
        json.dump(config, open(os.path.join(tmp, "config.json"), "w"))
        scaled = logits(tmp, ids)
    plain = logits(fixture, ids)
    scaled.numpy().astype("<f4").tofile(os.path.join(here, case["name"] + ".f32"))
    out["cases"].append({"name": case["name"], "fixture": case["fixture"], "config": case["config"], "ids": ids,
                         "shape": list(scaled.shape), "argmax": scaled.argmax(-1).tolist(),
                         "max_diff_from_unscaled": float((scaled - plain).abs().max())})
json.dump(out, open(os.path.join(here, "goldens.json"), "w"), indent=1)
