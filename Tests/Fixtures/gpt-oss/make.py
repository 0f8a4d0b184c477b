"""gpt-oss checkpoints (openai/gpt-oss-20b's and -120b's architecture, `gpt_oss`) with transformers' float32 logits
and greedy continuations.

Each case is a seeded random GptOssForCausalLM (unit-scale activations; biases, attention sinks and norms random too),
saved by save_pretrained:
  - "f32": float32 on disk as transformers writes it: `mlp.experts.gate_up_proj` [E, H, 2I] (x @ W form, gate and up
    interleaved in the last dimension), `gate_up_proj_bias` [E, 2I], `down_proj` [E, I, H], `down_proj_bias` [E, H],
    `mlp.router.weight` [E, H] with `mlp.router.bias` [E], `self_attn.sinks` [heads];
  - "mxfp4": as OpenAI ships gpt-oss: the expert matrices as MXFP4 (`gate_up_proj_blocks` [E, 2I, H/32, 16] uint8, two
    e2m1 values a byte, low nibble first, and `gate_up_proj_scales` [E, 2I, H/32] uint8, a power of two 2^(s − 127)
    per 32 values; `down_proj_blocks` [E, H, I/32, 16], `down_proj_scales` [E, H, I/32]), everything else bf16, and
    quantization_config {quant_method: mxfp4}. Its golden is transformers loading that directory itself
    (Mxfp4Config(dequantize=True): its own unpacking), run in float32.
The cases also set a small sliding_window on the sliding layers (layer_types alternate from layer 0, transformers'
default) and, in one, swiglu_limit 1.5 so that the clamps of gpt-oss's SwiGLU act on many values.
Run: python3 make.py (transformers 5.x, torch, safetensors, accelerate)."""
import json, os, random, shutil, sys, tempfile
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, Mxfp4Config

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
from seeded import seeded_model, top2_margin, transformers_outputs, write_golden

BASE = {"vocab_size": 320, "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 8,
        "num_experts_per_tok": 2, "sliding_window": 6, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None, "tie_word_embeddings": False}

CASES = [
    {"name": "gpt-oss-f32-clamped", "storage": "f32", "prompt_tokens": 21, "config": dict(BASE, swiglu_limit=1.5)},
    {"name": "gpt-oss-mxfp4", "storage": "mxfp4", "prompt_tokens": 18,
     "config": dict(BASE, hidden_size=96, intermediate_size=64, num_attention_heads=8, num_key_value_heads=2,
                    num_local_experts=6, num_experts_per_tok=3, num_hidden_layers=3, sliding_window=5)},
]

FP4 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4(w):
    """w [..., R, C] (C a multiple of 32) → blocks [..., R, C/32, 16] uint8 and scales [..., R, C/32] uint8: each 32
    values share 2^(s − 127), the smallest power of two that brings their largest magnitude to ≤ 6; each value the
    nearest e2m1 code (ties to the lower code)."""
    *lead, R, C = w.shape
    g = w.reshape(*lead, R, C // 32, 32)
    amax = g.abs().amax(-1, keepdim=True).clamp(min=2.0 ** -100)
    e = torch.ceil(torch.log2(amax / 6.0)).clamp(-127, 127)
    q = g / torch.exp2(e)
    codes = (q.unsqueeze(-1) - FP4).abs().argmin(-1).to(torch.uint8)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return packed, (e.squeeze(-1) + 127).to(torch.uint8)


def gpt_oss_init(name, p):
    """Sinks at unit scale; the expert tensors, stored [E, in, out] (x @ W), by their fan-in."""
    if name.endswith("sinks"):
        p.copy_(torch.randn_like(p))
    elif name.endswith("gate_up_proj") or name.endswith("experts.down_proj"):
        p.copy_(torch.randn_like(p) / (p.shape[-2] ** 0.5))
    else:
        return False
    return True


for i, case in enumerate(CASES):
    cfg = dict(case["config"])
    model = seeded_model("gpt_oss", cfg, 4000 + i, init=gpt_oss_init)
    tmp = tempfile.mkdtemp()
    saved = os.path.join(tmp, "saved")
    model.save_pretrained(saved)
    d = os.path.join(here, case["name"])
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    rnd = random.Random(i)
    ids = [rnd.randrange(cfg["vocab_size"]) for _ in range(case["prompt_tokens"])]
    conf = json.load(open(os.path.join(saved, "config.json")))
    if case["storage"] == "f32":
        shutil.copy(os.path.join(saved, "model.safetensors"), d)
        logits, greedy = transformers_outputs(saved, ids, dtype=torch.float32)
    else:
        state = load_file(os.path.join(saved, "model.safetensors"))
        out = {}
        for name, t in state.items():
            if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
                blocks, scales = mxfp4(t.transpose(1, 2).contiguous())      # [E, out, in], as OpenAI stores them
                out[name + "_blocks"], out[name + "_scales"] = blocks, scales
            else:
                out[name] = t.to(torch.bfloat16)
        save_file(out, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        conf["dtype"] = "bfloat16"
        conf["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
            "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
        json.dump(conf, open(os.path.join(d, "config.json"), "w"), indent=2)
        logits, greedy = transformers_outputs(d, ids, dtype=torch.float32, quantization_config=Mxfp4Config(dequantize=True))
    json.dump(conf, open(os.path.join(d, "config.json"), "w"), indent=2)
    write_golden(d, ids, logits, greedy, {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]},
                 min_top2_margin=top2_margin(logits))
    shutil.rmtree(tmp)
    print(case["name"], len(ids), greedy)

# mxfp4-values.json: transformers' own unpacking (convert_moe_packed_tensors) of blocks holding every byte value under
# scales from 2^-127 to 2^127, as [rows, cols] f32 bit patterns (its [E, in, out] result transposed back to [out, in]).
from transformers.integrations.mxfp4 import convert_moe_packed_tensors
scales = torch.tensor([[0, 1, 100, 127, 130, 254, 119, 127]], dtype=torch.uint8)          # [1 expert, rows 1, 8 groups]
blocks = torch.stack([torch.arange(256, dtype=torch.int32).to(torch.uint8)[g * 16:(g + 1) * 16] for g in range(8)]).reshape(1, 1, 8, 16)
blocks = torch.cat([blocks, blocks.flip(-1)], dim=1)                                        # two rows
scales = torch.cat([scales, scales.flip(-1)], dim=0).reshape(1, 2, 8)
values = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)[0].t().contiguous()  # [2, 256]
json.dump({"blocks": blocks.reshape(2, 128).tolist(), "scales": scales.reshape(2, 8).tolist(),
           "values": [[v & 0xFFFFFFFF for v in r] for r in values.view(torch.int32).tolist()]},
          open(os.path.join(here, "mxfp4-values.json"), "w"))

# swiglu.json: GptOssExperts' own gate (_apply_gate) on interleaved gate|up rows, for two limits.
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts
torch.manual_seed(5)
cases = []
for alpha, limit in ((1.702, 7.0), (1.702, 1.5), (0.5, 3.0)):
    experts = GptOssExperts(AutoConfig.for_model("gpt_oss", **dict(BASE, swiglu_alpha=alpha, swiglu_limit=limit)))
    gate_up = torch.randn(3, 16) * 6
    out = experts._apply_gate(gate_up)
    cases.append({"alpha": alpha, "limit": limit, "gate_up": gate_up.flatten().tolist(), "out": out.flatten().tolist()})
json.dump(cases, open(os.path.join(here, "swiglu.json"), "w"))

# A tokenizer for gpt-oss-f32-clamped in the form of gpt-oss's own (o200k_harmony as tokenizer.json: byte-level BPE
# after a Split on o200k's regex, harmony's special tokens), trained small (vocabulary 320) with the tokenizers
# library, its chat template gpt-oss's (../chat-templates/gpt-oss.jinja), and the stop tokens gpt-oss's
# generation_config.json lists (<|return|>, <|endoftext|>, <|call|>). tokenizer-cases.json: texts and their ids as
# tokenizers encodes them; chat-cases.json: chat requests, the prompt transformers' apply_chat_template renders (with
# the day make.py ran on, strftime_now's) and its ids.
from tokenizers import Tokenizer, Regex, models, pre_tokenizers, decoders, trainers
from transformers import PreTrainedTokenizerFast
O200K = ("[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
         "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
         "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
SPECIAL = ["<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>", "<|end|>",
           "<|message|>", "<|call|>"]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(O200K), behavior="isolated", invert=False),
                                             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
tok.decoder = decoders.ByteLevel()
corpus = ["The weather in Oslo is grey and cold today.", "What's the capital of France? It's Paris.",
          "Answer in French. Be terse. I'LL call the get_weather tool with {\"city\": \"Oslo\"}.",
          "Numbers: 1234567 and 3.14159, dates like 2024-06-01.", "functions.get_weather to=assistant commentary json",
          "analysis final commentary channel message"] * 20
tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=BASE["vocab_size"], special_tokens=SPECIAL,
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
assert tok.get_vocab_size() <= BASE["vocab_size"]
d = os.path.join(here, "gpt-oss-f32-clamped")
tok.save(os.path.join(d, "tokenizer.json"))
template = open(os.path.join(here, "..", "chat-templates", "gpt-oss.jinja")).read()
json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|startoftext|>", "eos_token": "<|return|>",
           "pad_token": "<|endoftext|>", "model_max_length": 4096, "chat_template": template},
          open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1)
ids = {t: tok.token_to_id(t) for t in SPECIAL}
json.dump({"bos_token_id": ids["<|startoftext|>"], "eos_token_id": [ids["<|return|>"], ids["<|endoftext|>"], ids["<|call|>"]],
           "pad_token_id": ids["<|endoftext|>"]}, open(os.path.join(d, "generation_config.json"), "w"), indent=1)
texts = ["Hello world", "DON'T shout, we'RE fine", "CamelCaseWord and HTTPServer", "12345678 9", "a\n\n  b\r\n",
         "naïve café — 東京 Ünïcödé", "<|start|>assistant<|channel|>final<|message|>Hi!<|return|>", "x/\n/y", "  lead and trail  "]
json.dump([{"text": t, "ids": tok.encode(t).ids} for t in texts], open(os.path.join(here, "tokenizer-cases.json"), "w"),
          ensure_ascii=False, indent=1)
fast = PreTrainedTokenizerFast.from_pretrained(d)
chats = [{"messages": [{"role": "user", "content": "What's the weather in Oslo?"}], "tools": [
             {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
                 "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]},
         {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}], "reasoning_effort": "high"}]
out = []
for c in chats:
    kwargs = {"reasoning_effort": c["reasoning_effort"]} if "reasoning_effort" in c else {}
    text = fast.apply_chat_template(c["messages"], tools=c.get("tools"), tokenize=False, add_generation_prompt=True, **kwargs)
    out.append({"request": c, "prompt": text, "ids": fast.encode(text, add_special_tokens=False)})
json.dump(out, open(os.path.join(here, "chat-cases.json"), "w"), ensure_ascii=False, indent=1)
