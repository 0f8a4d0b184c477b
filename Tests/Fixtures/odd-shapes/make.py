"""Small checkpoints of odd shapes, saved by transformers, with their float32 logits and greedy continuations.

Each case of cases.json gives a family and config keys (head_dim not hidden/heads, one KV head, three experts all
used, top-1 routing, sparse-step and mlp-only layers, biases, tied embeddings, sliding windows shorter than the
prompt, bf16 on disk). Weights are seeded random with unit-scale activations (matrices ~ N(0, 1/fan_in), norms near
1). Each case's directory holds config.json and model.safetensors as save_pretrained writes them, and golden.json:
the prompt ids, greedy continuation (12 tokens, EOS ignored) and logits of every prompt position as little-endian
float32 in logits.f32. Computed by transformers from the saved files (float32, eager attention). pad_token_id is null
where the family has a default (OLMoE: 1): generate would mask a prompt id equal to it.
Run: python3 make.py [NAME …] (transformers 5.x, torch; the named cases only, each keeping its seed)."""
import json, os, random, sys
import torch
import transformers

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
from seeded import seeded_model, top2_margin, transformers_outputs, write_golden
cases = json.load(open(os.path.join(here, "cases.json")))
for i, case in enumerate(cases):
    if sys.argv[1:] and case["name"] not in sys.argv[1:]:
        continue
    cfg = dict(case["config"])
    dtype = cfg.pop("save_dtype", "float32")
    model = seeded_model(case["family"], cfg, 1000 + i)
    d = os.path.join(here, case["name"])
    (model.to(torch.bfloat16) if dtype == "bfloat16" else model).save_pretrained(d)
    rnd = random.Random(i)
    ids = [rnd.randrange(cfg["vocab_size"]) for _ in range(case["prompt_tokens"])]
    logits, greedy = transformers_outputs(d, ids, dtype=torch.float32)
    gc = os.path.join(d, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    write_golden(d, ids, logits, greedy, {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]},
                 min_top2_margin=top2_margin(logits))
    print(case["name"], len(ids), dtype)
