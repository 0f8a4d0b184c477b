"""GPTQ and AWQ checkpoints as GPTQModel quantises and saves them (the library behind transformers' GPTQ and AWQ
support), with transformers' float32 logits and greedy continuations on the weights GPTQModel dequantises.

Each case's model is made as odd-shapes/make.py makes its own (seeded random weights), saved by save_pretrained in
float32, then quantised by GPTQModel on the CPU against 16 seeded random sequences of 64 tokens: every linear layer of
the decoder layers (attention, routed and shared experts; not the embeddings, lm_head, norms or routers), each expert
its own module, as GPTQModel writes MoE checkpoints. GPTQModel saves the other tensors in bfloat16.
  - GPTQ: `NAME.qweight`, `NAME.qzeros`, `NAME.scales` (f16), `NAME.g_idx`; checkpoint_format gptq (v1: zero
    points stored less one), as every AutoGPTQ / GPTQModel release;
  - AWQ: `NAME.qweight`, `NAME.qzeros`, `NAME.scales` in AutoAWQ's GEMM layout, with zero points (sym False:
    AutoAWQ's zero_point true).
The golden is computed by transformers (float32, eager attention) on a float32 checkpoint of the same tensors, each
quantised layer's weight as GPTQModel's own kernels dequantise it (TorchLinear.dequantize_weight for GPTQ, after
v1 zero points are restored at load; packing_utils.dequantize_gemm for AWQ), with the scales widened to float32 first
so that (q − z) · s is exact, as it is in float32.
Run in an environment with GPTQModel (pip install gptqmodel optimum; 7.7.0 here):
GPTQMODEL_CPU_WORKERS=2 python3 make.py [NAME…]"""
import json, os, shutil, sys, tempfile
import torch
import transformers
import gptqmodel
from gptqmodel import BACKEND, GPTQModel, QuantizeConfig
from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
from seeded import fresh_dir, seeded_golden, seeded_model, write_golden

QWEN3 = {"vocab_size": 300, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 96, "num_experts": 8, "num_experts_per_tok": 2,
         "moe_intermediate_size": 32, "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [],
         "max_position_embeddings": 512, "rope_theta": 1000000.0, "bos_token_id": 1, "eos_token_id": 2}
QWEN3_FOUR = dict(QWEN3, vocab_size=280, num_experts=4)
# AWQ's clipping search takes output rows 64 at a time: every projection's outputs a multiple of 64.
QWEN2 = {"vocab_size": 320, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "intermediate_size": 192, "num_experts": 4, "num_experts_per_tok": 2,
         "moe_intermediate_size": 64, "shared_expert_intermediate_size": 128, "norm_topk_prob": False,
         "decoder_sparse_step": 1, "mlp_only_layers": [], "max_position_embeddings": 512, "bos_token_id": 1,
         "eos_token_id": 2}
CASES = [
    # Act order (desc_act: g_idx not i / 32) with zero points (sym false), stored as v1.
    {"name": "qwen3-moe-gptq-int4-actorder", "family": "qwen3_moe", "config": QWEN3, "prompt_tokens": 15,
     "quantize": {"bits": 4, "group_size": 32, "desc_act": True, "sym": False}},
    # 8 bits, one group per row (group_size -1), symmetric.
    {"name": "qwen3-moe-gptq-int8-rows", "family": "qwen3_moe", "config": QWEN3_FOUR, "prompt_tokens": 13,
     "quantize": {"bits": 8, "group_size": -1, "desc_act": False, "sym": True, "act_group_aware": False}},
    # 2 bits, symmetric, groups of 32.
    {"name": "qwen3-moe-gptq-int2", "family": "qwen3_moe", "config": QWEN3_FOUR, "prompt_tokens": 12,
     "quantize": {"bits": 2, "group_size": 32, "desc_act": False, "sym": True}},
    # AWQ (GEMM layout, zero points), with Qwen2-MoE's shared expert.
    {"name": "qwen2-moe-awq-int4", "family": "qwen2_moe", "config": QWEN2, "prompt_tokens": 14,
     "quantize": {"bits": 4, "group_size": 32, "quant_method": "awq", "format": "gemm", "sym": False}},
    # 3 bits (codes straddling words), zero points (sym false), groups of 32.
    {"name": "qwen3-moe-gptq-int3", "family": "qwen3_moe", "config": QWEN3_FOUR, "prompt_tokens": 11,
     "quantize": {"bits": 3, "group_size": 32, "desc_act": False, "sym": False}},
]


def dequantised(qdir, awq):
    """name.weight → float32 [out, in] of every quantised module, as GPTQModel dequantises it."""
    model = GPTQModel.load(qdir, device="cpu", backend=BACKEND.TORCH, dtype=torch.float16)
    out = {}
    for name, mod in model.model.named_modules():
        if not hasattr(mod, "qweight"):
            continue
        if awq:
            w = dequantize_gemm(mod.qweight, mod.qzeros, mod.scales.float(), mod.bits, mod.group_size)
        else:
            mod.scales = mod.scales.float()
            w = mod.dequantize_weight()
        assert w.dtype == torch.float32 and tuple(w.shape) == (mod.in_features, mod.out_features), (name, w.shape)
        out[name + ".weight"] = w.t().contiguous()
    return out


for i, case in enumerate(CASES):
    if sys.argv[1:] and case["name"] not in sys.argv[1:]:   # python3 make.py NAME… remakes those cases alone
        continue
    model = seeded_model(case["family"], case["config"], 6000 + i)
    tmp = tempfile.mkdtemp()
    f32_dir, q_dir, deq_dir = (os.path.join(tmp, d) for d in ("f32", "quantised", "dequantised"))
    model.save_pretrained(f32_dir)
    # GPTQModel loads a tokenizer with every model; the calibration is token ids, so any will do.
    vocab = {f"t{j}": j for j in range(case["config"]["vocab_size"])}
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="t0"))).save_pretrained(f32_dir)
    q = GPTQModel.load(f32_dir, QuantizeConfig(**case["quantize"]), device="cpu")
    g = torch.Generator().manual_seed(100 + i)
    calibration = [{"input_ids": torch.randint(0, case["config"]["vocab_size"], (1, 64), generator=g),
                    "attention_mask": torch.ones(1, 64, dtype=torch.long)} for _ in range(16)]
    q.quantize(calibration, backend=BACKEND.TORCH)
    q.save(q_dir)
    stored = load_file(os.path.join(q_dir, "model.safetensors"))
    weights = dequantised(q_dir, case["quantize"].get("quant_method") == "awq")
    deq = {name: t.float() for name, t in stored.items()
           if not name.endswith((".qweight", ".qzeros", ".scales", ".g_idx"))}
    assert not set(deq) & set(weights)
    deq.update(weights)
    shutil.copytree(f32_dir, deq_dir)
    os.remove(os.path.join(deq_dir, "model.safetensors"))
    save_file(deq, os.path.join(deq_dir, "model.safetensors"), metadata={"format": "pt"})
    ids, logits, greedy = seeded_golden(deq_dir, i, case["config"]["vocab_size"], case["prompt_tokens"])
    d = fresh_dir(os.path.join(here, case["name"]))
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(q_dir, f), d)
    write_golden(d, ids, logits, greedy, {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
                                          "gptqmodel": gptqmodel.__version__})
    shutil.rmtree(tmp)
    print(case["name"], len(ids), sorted(json.load(open(os.path.join(d, "config.json")))["quantization_config"].items())[:6])
shutil.rmtree("logs", ignore_errors=True)   # GPTQModel's quantisation logs, written where it runs
