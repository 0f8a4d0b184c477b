"""Integer checkpoints in compressed-tensors' format (llm-compressor's W4A16 and W8A8 releases), made with the
compressed-tensors library's own quantize / pack / unpack / dequantize, with transformers' float32 logits and greedy
continuations on the weights compressed-tensors decompresses.

Each case's model is made as odd-shapes/make.py makes its own (seeded random weights), saved by save_pretrained in
float32; then every linear weight of the decoder layers (attention, dense MLPs, routed experts; not the embeddings,
lm_head, norms or routers) is quantised by compressed-tensors (calculate_qparams, quantize):
  - "pack-quantized": int4 (or int3) in groups of 32 (16) along a row, `W.weight_packed` (int32, a dense stream of
    fields a row, as pack_to_int32 writes them), `W.weight_scale` [rows, cols / 32], `W.weight_shape` [rows, cols];
    asymmetric ones with `W.weight_zero_point` packed along rows (pack_to_int32 with packed_dim=0, as
    compressed-tensors' PackedQuantizationCompressor stores them);
  - "int-quantized": int8, one scale per row: `W.weight` (int8), `W.weight_scale` [rows, 1]; asymmetric ones with
    `W.weight_zero_point` [rows, 1] (int8).
quantization_config is what compressed-tensors writes for those schemes. The golden is computed by transformers
(float32, eager attention) on the weights as compressed-tensors' unpack_from_int32 and dequantize give them back.
Run: python3 make.py (transformers 5.x, torch, safetensors, compressed-tensors)."""
import json, os, shutil, sys, tempfile
import torch
import transformers
import compressed_tensors
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32, unpack_from_int32
from compressed_tensors.quantization import QuantizationArgs
from compressed_tensors.quantization.lifecycle.forward import dequantize, quantize
from compressed_tensors.quantization.utils import calculate_qparams
from safetensors.torch import load_file, save_file

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
from seeded import fresh_dir, seeded_golden, seeded_model, write_golden
CASES = [
    {"name": "qwen3-moe-w4a16-groups", "family": "qwen3_moe", "prompt_tokens": 15, "format": "pack-quantized",
     "args": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 32},
     "config": {"vocab_size": 300, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 96, "num_experts": 8,
                "num_experts_per_tok": 2, "moe_intermediate_size": 32, "norm_topk_prob": True, "decoder_sparse_step": 1,
                "mlp_only_layers": [1], "max_position_embeddings": 512, "rope_theta": 1000000.0, "bos_token_id": 1,
                "eos_token_id": 2}},
    {"name": "mixtral-w8a8-channels", "family": "mixtral", "prompt_tokens": 14, "format": "int-quantized",
     "args": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
     "input_activations": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True},
     "config": {"vocab_size": 280, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 6,
                "num_key_value_heads": 2, "intermediate_size": 40, "num_local_experts": 4, "num_experts_per_tok": 2,
                "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2}},
    # Asymmetric (zero points, packed along rows as pack_to_int32(packed_dim=0) packs them), 4 bits in groups of 32.
    {"name": "mixtral-w4a16-asym-groups", "family": "mixtral", "prompt_tokens": 13, "format": "pack-quantized",
     "args": {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 32},
     "config": {"vocab_size": 260, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "intermediate_size": 96, "num_local_experts": 4, "num_experts_per_tok": 2,
                "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2}},
    # 3 bits (fields straddle words), asymmetric, groups of 16.
    {"name": "qwen3-moe-w3a16-asym-groups", "family": "qwen3_moe", "prompt_tokens": 12, "format": "pack-quantized",
     "args": {"num_bits": 3, "type": "int", "symmetric": False, "strategy": "group", "group_size": 16},
     "config": {"vocab_size": 290, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 12, "intermediate_size": 80, "num_experts": 4,
                "num_experts_per_tok": 2, "moe_intermediate_size": 32, "norm_topk_prob": True, "decoder_sparse_step": 1,
                "mlp_only_layers": [], "max_position_embeddings": 512, "rope_theta": 1000000.0, "bos_token_id": 1,
                "eos_token_id": 2}},
    # int8 with a zero point per row, unpacked (int-quantized keeps weight_zero_point as int8).
    {"name": "mixtral-w8a16-asym-channels", "family": "mixtral", "prompt_tokens": 11, "format": "int-quantized",
     "args": {"num_bits": 8, "type": "int", "symmetric": False, "strategy": "channel"},
     "config": {"vocab_size": 270, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "intermediate_size": 48, "num_local_experts": 4, "num_experts_per_tok": 2,
                "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2}},
]
KEEP = ("embed_tokens", "lm_head", "norm", ".gate.weight")


def quantised(name, t):
    return name.endswith(".weight") and t.dim() == 2 and ".layers." in name and not any(k in name for k in KEEP)


for i, case in enumerate(CASES):
    model = seeded_model(case["family"], case["config"], 4000 + i)
    tmp = tempfile.mkdtemp()
    f32_dir, deq_dir = os.path.join(tmp, "f32"), os.path.join(tmp, "dequantised")
    model.save_pretrained(f32_dir)
    state = load_file(os.path.join(f32_dir, "model.safetensors"))
    args = QuantizationArgs(**case["args"])
    out, deq = {}, {}
    for name, w in state.items():
        if not quantised(name, w):
            out[name] = deq[name] = w
            continue
        rows, cols = w.shape
        if args.strategy == "group":
            g = w.view(rows, cols // args.group_size, args.group_size)
            lo, hi = g.amin(dim=-1), g.amax(dim=-1)
        else:
            lo, hi = w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True)
        scale, zero = calculate_qparams(lo, hi, args)
        q = quantize(w, scale, zero, args, dtype=torch.int8)
        base = name[: -len("weight")]
        if case["format"] == "pack-quantized":
            packed = pack_to_int32(q, args.num_bits)
            out[base + "weight_packed"] = packed
            out[base + "weight_shape"] = torch.tensor([rows, cols], dtype=torch.int64)
            q = unpack_from_int32(packed, args.num_bits, torch.Size([rows, cols]))
            if not args.symmetric:
                packed_zero = pack_to_int32(zero.to(torch.int8), args.num_bits, packed_dim=0)
                out[base + "weight_zero_point"] = packed_zero
                zero = unpack_from_int32(packed_zero, args.num_bits, zero.shape, packed_dim=0)
        else:
            out[base + "weight"] = q
            if not args.symmetric:
                out[base + "weight_zero_point"] = zero.to(torch.int8)
        out[base + "weight_scale"] = scale
        deq[name] = dequantize(q, scale, zero, args, dtype=torch.float32)
    shutil.copytree(f32_dir, deq_dir)
    save_file(deq, os.path.join(deq_dir, "model.safetensors"), metadata={"format": "pt"})
    ids, logits, greedy = seeded_golden(deq_dir, i, case["config"]["vocab_size"], case["prompt_tokens"])
    d = fresh_dir(os.path.join(here, case["name"]))
    conf = json.load(open(os.path.join(f32_dir, "config.json")))
    scheme = {"targets": ["Linear"], "weights": dict(case["args"], dynamic=False), "format": case["format"],
              "input_activations": case.get("input_activations"), "output_activations": None}
    conf["quantization_config"] = {"quant_method": "compressed-tensors", "format": case["format"],
                                   "quantization_status": "compressed", "ignore": ["lm_head"],
                                   "config_groups": {"group_0": scheme}, "version": compressed_tensors.__version__}
    json.dump(conf, open(os.path.join(d, "config.json"), "w"), indent=2)
    save_file(out, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    write_golden(d, ids, logits, greedy, {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
                                          "compressed_tensors": compressed_tensors.__version__})
    shutil.rmtree(tmp)
    print(case["name"], len(ids))
