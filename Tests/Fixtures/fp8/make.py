"""FP8 checkpoints (weights stored as float8 with scales, as DeepSeek-V3/R1, Qwen3-FP8 and FBGEMM/compressed-tensors
FP8 checkpoints ship) with transformers' float32 logits and greedy continuations, and the value of every FP8 byte.

Each case's model is made as odd-shapes/make.py makes its own (seeded random weights, unit-scale activations), saved by
save_pretrained in float32, and then every linear weight of the decoder layers (attention, dense MLPs, shared and
routed experts; not the embeddings, lm_head, norms, routers or biases) is quantised to float8 e4m3 with scales:
  - "blocks": quantization_config {quant_method: fp8, weight_block_size: [br, bc]}; `W.weight_scale_inv` holds one
    scale per br × bc block, ceil(rows / br) × ceil(cols / bc) of them (DeepSeek's layout; the last blocks of a
    ragged matrix are partial), value = fp8 × scale;
  - "tensor": quantization_config {quant_method: fp8, weight_block_size: null}; one `W.weight_scale_inv` (shape []);
  - "rows": quantization_config {quant_method: fbgemm_fp8}; `W.weight_scale` [rows, 1], value = fp8 × scale;
  - "ct-block" / "ct-group": compressed-tensors' float-quantized format with the "block" strategy (block_structure
    [br, bc]) or the "group" strategy (group_size bc, blocks of 1 × bc); `W.weight_scale` holds the grid, ragged
    last blocks as above.
A scale is amax / 448 of its block or row (448: e4m3's largest finite value), stored in `scale_dtype`.
The golden is computed by transformers (float32, eager attention) on the weights dequantised as fp8 → float32 × scale.
With one scale per tensor, or where every width is a multiple of the block, transformers also loads the FP8 directory
itself (its CPU path dequantises the same way), and make.py checks that it gives the same logits.
fp8-values.json: for each byte 0–255, the float32 bit pattern of torch's float8_e4m3fn and float8_e5m2 value.
Run: python3 make.py (transformers 5.x, torch, safetensors)."""
import json, os, random, shutil, sys, tempfile
import torch
import transformers
from safetensors.torch import load_file, save_file

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
from seeded import seeded_model, top2_margin, transformers_outputs, write_golden

# Shapes two cases share: widths that are not multiples of the 32-wide blocks (Qwen3-MoE), and a small Mixtral.
QWEN3_MOE_RAGGED = {"vocab_size": 300, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "head_dim": 20, "intermediate_size": 56, "num_experts": 8,
                    "num_experts_per_tok": 2, "moe_intermediate_size": 40, "norm_topk_prob": True,
                    "decoder_sparse_step": 1, "mlp_only_layers": [], "max_position_embeddings": 512,
                    "rope_theta": 1000000.0, "bos_token_id": 1, "eos_token_id": 2}
MIXTRAL_SMALL = {"vocab_size": 280, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 6,
                 "num_key_value_heads": 2, "intermediate_size": 40, "num_local_experts": 4, "num_experts_per_tok": 2,
                 "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2}

CASES = [
    {"name": "deepseek-v3-fp8-blocks", "family": "deepseek_v3", "prompt_tokens": 20, "scales": "blocks", "block": [32, 32],
     "scale_dtype": "float32",
     "config": {"vocab_size": 320, "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 3,
                "num_attention_heads": 4, "num_key_value_heads": 4, "moe_intermediate_size": 32, "num_experts_per_tok": 2,
                "n_shared_experts": 1, "first_k_dense_replace": 1, "q_lora_rank": 32, "kv_lora_rank": 64,
                "qk_nope_head_dim": 32, "qk_rope_head_dim": 32, "v_head_dim": 16, "n_routed_experts": 8, "n_group": 2,
                "topk_group": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": True, "rms_norm_eps": 1e-06,
                "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None}},
    {"name": "qwen3-moe-fp8-ragged-blocks", "family": "qwen3_moe", "prompt_tokens": 17, "scales": "blocks",
     "block": [32, 32], "scale_dtype": "bfloat16",
     "config": QWEN3_MOE_RAGGED},
    {"name": "mixtral-fp8-per-channel", "family": "mixtral", "prompt_tokens": 15, "scales": "rows", "scale_dtype": "float32",
     "config": MIXTRAL_SMALL},
    {"name": "olmoe-fp8-per-tensor", "family": "olmoe", "prompt_tokens": 14, "scales": "tensor", "scale_dtype": "float32",
     "config": {"vocab_size": 260, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 4, "intermediate_size": 24, "num_experts": 6, "num_experts_per_tok": 2,
                "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None}},
    {"name": "qwen3-moe-fp8-compressed-blocks", "family": "qwen3_moe", "prompt_tokens": 16, "scales": "ct-block",
     "block": [32, 32], "scale_dtype": "bfloat16",
     "config": QWEN3_MOE_RAGGED},
    {"name": "mixtral-fp8-compressed-groups", "family": "mixtral", "prompt_tokens": 13, "scales": "ct-group",
     "block": [1, 16], "scale_dtype": "float32",
     "config": MIXTRAL_SMALL},
]

E4M3_MAX = 448.0
KEEP = ("embed_tokens", "lm_head", "norm", ".gate.weight", "gate.e_score_correction_bias")


def quantised(name, t):
    return name.endswith(".weight") and t.dim() == 2 and ".layers." in name and not any(k in name for k in KEEP)


def fp8_blocks(w, br, bc):
    rows, cols = w.shape
    gr, gc = -(-rows // br), -(-cols // bc)
    scale = torch.empty(gr, gc)
    for i in range(gr):
        for j in range(gc):
            amax = w[i * br:(i + 1) * br, j * bc:(j + 1) * bc].abs().max()
            scale[i, j] = amax / E4M3_MAX if amax > 0 else 1.0
    return scale


def expand_blocks(scale, rows, cols, br, bc):
    return scale.repeat_interleave(br, 0).repeat_interleave(bc, 1)[:rows, :cols]


for i, case in enumerate(CASES):
    cfg = dict(case["config"])
    model = seeded_model(case["family"], cfg, 3000 + i)
    tmp = tempfile.mkdtemp()
    f32_dir, deq_dir = os.path.join(tmp, "f32"), os.path.join(tmp, "dequantised")
    model.save_pretrained(f32_dir)
    state = load_file(os.path.join(f32_dir, "model.safetensors"))
    scale_dtype = getattr(torch, case["scale_dtype"])
    fp8, deq = {}, {}
    for name, w in state.items():
        if not quantised(name, w):
            fp8[name] = w
            deq[name] = w
            continue
        rows, cols = w.shape
        if case["scales"] in ("blocks", "ct-block", "ct-group"):
            br, bc = case["block"]
            scale = fp8_blocks(w, br, bc).to(scale_dtype)
            full = expand_blocks(scale.float(), rows, cols, br, bc)
            fp8[name + ("_scale_inv" if case["scales"] == "blocks" else "_scale")] = scale
        elif case["scales"] == "tensor":
            amax = w.abs().max()
            scale = (amax / E4M3_MAX if amax > 0 else torch.tensor(1.0)).to(scale_dtype).reshape(())
            full = scale.float().expand(rows, cols)
            fp8[name + "_scale_inv"] = scale
        else:
            amax = w.abs().amax(dim=1, keepdim=True)
            scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax)).to(scale_dtype)
            full = scale.float().expand(rows, cols)
            fp8[name[: -len("weight")] + "weight_scale"] = scale
        q = (w / full).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
        fp8[name] = q
        deq[name] = q.float() * full
    shutil.copytree(f32_dir, deq_dir)
    save_file(deq, os.path.join(deq_dir, "model.safetensors"), metadata={"format": "pt"})

    rnd = random.Random(i)
    ids = [rnd.randrange(cfg["vocab_size"]) for _ in range(case["prompt_tokens"])]
    logits, greedy = transformers_outputs(deq_dir, ids, dtype=torch.float32)

    d = os.path.join(here, case["name"])
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    conf = json.load(open(os.path.join(f32_dir, "config.json")))
    if case["scales"] == "blocks":
        conf["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                       "weight_block_size": case["block"]}
    elif case["scales"] == "tensor":
        conf["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                       "weight_block_size": None}
    elif case["scales"] in ("ct-block", "ct-group"):
        weights = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": False}
        if case["scales"] == "ct-block":
            weights.update(strategy="block", block_structure=case["block"], group_size=None)
        else:
            weights.update(strategy="group", group_size=case["block"][1])
        conf["quantization_config"] = {
            "quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
            "ignore": ["lm_head"], "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True, "symmetric": True}}}}
    else:
        conf["quantization_config"] = {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0}
    json.dump(conf, open(os.path.join(d, "config.json"), "w"), indent=2)
    save_file(fp8, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    checked = None
    if case["scales"] == "tensor" or case["scales"] == "blocks" and all(
            t.shape[0] % case["block"][0] == 0 and t.shape[1] % case["block"][1] == 0
            for n, t in fp8.items() if t.dtype == torch.float8_e4m3fn):
        direct, direct_greedy = transformers_outputs(d, ids, dtype=torch.float32)
        checked = float((direct - logits).abs().max())
        assert checked < 1e-5 and direct_greedy == greedy, (case["name"], checked)
    write_golden(d, ids, logits, greedy, {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]},
                 min_top2_margin=top2_margin(logits), transformers_fp8_load_max_diff=checked)
    shutil.rmtree(tmp)
    print(case["name"], len(ids), "checked against transformers' own FP8 load:", checked)

values = {}
for name, dt in (("e4m3", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)):
    f = torch.arange(256, dtype=torch.uint8).view(dt).float()
    values[name] = f.view(torch.int32).tolist()
    values[name] = [v & 0xFFFFFFFF for v in values[name]]
json.dump(values, open(os.path.join(here, "fp8-values.json"), "w"))
