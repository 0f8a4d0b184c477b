"""DeepSeek routing cases: router logits in, chosen experts and weights out, as transformers' own routers compute them
(DeepseekV2TopkRouter: softmax, greedy or group_limited_greedy, × routed_scaling_factor; DeepseekV3TopkRouter:
sigmoid, e_score_correction_bias for the choice, groups ranked by their two best, renormalised when norm_topk_prob,
× routed_scaling_factor). The router's weight is the identity, so its logits are the hidden states given.
Run: python3 make.py (transformers 5.x, torch) > deepseek.json"""
import json, random
import torch
import transformers
from transformers import DeepseekV2Config, DeepseekV3Config
from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

rnd = random.Random(7)
cases = []
def run(family, E, K, tokens, **kw):
    if family == "v2":
        cfg = DeepseekV2Config(hidden_size=E, num_attention_heads=1, num_key_value_heads=1, n_routed_experts=E, num_experts_per_tok=K, **kw)
        r = DeepseekV2TopkRouter(cfg)
    else:
        cfg = DeepseekV3Config(hidden_size=E, num_attention_heads=1, num_key_value_heads=1, n_routed_experts=E, num_experts_per_tok=K, **kw)
        r = DeepseekV3TopkRouter(cfg)
        r.e_score_correction_bias.copy_(torch.tensor([rnd.gauss(0, 0.3) for _ in range(E)]))
    with torch.no_grad():
        r.weight.copy_(torch.eye(E))
        logits = torch.tensor([[rnd.gauss(0, 2) for _ in range(E)] for _ in range(tokens)])
        _, w, idx = r(logits)
    bias = r.e_score_correction_bias.tolist() if family == "v3" else None
    # transformers' topk runs with sorted=False: the order of a token's choices is not part of the result.
    out = [sorted(zip(i, x), key=lambda p: -p[1]) for i, x in zip(idx.tolist(), w.tolist())]
    cases.append({"family": family, "experts": E, "top_k": K, "config": kw, "logits": logits.tolist(), "bias": bias,
                  "experts_chosen": [[e for e, _ in t] for t in out], "weights": [[x for _, x in t] for t in out]})

run("v2", 8, 2, 5, topk_method="greedy", routed_scaling_factor=1.0)
run("v2", 16, 4, 6, topk_method="greedy", routed_scaling_factor=16.0)
run("v2", 8, 3, 6, topk_method="group_limited_greedy", n_group=4, topk_group=2, routed_scaling_factor=1.0)
run("v2", 12, 4, 6, topk_method="group_limited_greedy", n_group=3, topk_group=1, routed_scaling_factor=2.0)
run("v3", 16, 4, 6, n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True)
run("v3", 12, 3, 6, n_group=1, topk_group=1, routed_scaling_factor=1.5, norm_topk_prob=False)
run("v3", 32, 8, 6, n_group=8, topk_group=4, routed_scaling_factor=2.5, norm_topk_prob=True)
print(json.dumps({"reference": {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]},
                  "cases": cases}))
