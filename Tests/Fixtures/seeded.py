"""What the fixture makers share: a seeded random model whose activations stay about unit scale (norm weights near
1, biases small, each matrix's entries of variance 1/fan-in), transformers' float32 logits of a prompt with its
greedy continuation, and the files a case's golden is kept in. The makers of odd-shapes/, fp8/, compressed-tensors/,
gpt-oss/ and gptq-awq/ import it."""
import json, os, random, shutil
import torch
from transformers import AutoConfig, AutoModelForCausalLM


def seeded_model(family, cfg, seed, init=None):
    """A float32 `family` model of config `cfg` with seeded weights; `init(name, p)` may set a parameter itself and
    return True (in the same order of random draws)."""
    config = AutoConfig.for_model(family, **cfg)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif "bias" in name:
                p.copy_(0.1 * torch.randn_like(p))
            elif init is None or not init(name, p):
                p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):   # DeepSeek-V3's routing bias: zeros at init
                b.copy_(0.1 * torch.randn_like(b))
    return model


def transformers_outputs(model_dir, ids, max_new_tokens=12, **load):
    """Logits [T, vocab] of every prompt position and the greedy continuation (EOS ignored), in float32."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager", **load).float().eval()
    model.generation_config.eos_token_id = None
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
        greedy = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False)[0, len(ids):].tolist()
    return logits, greedy


def seeded_golden(model_dir, seed, vocab_size, tokens):
    """A prompt of `tokens` ids below vocab_size drawn with random.Random(seed), and transformers' float32 logits and
    greedy continuation of it: (ids, logits, greedy)."""
    rnd = random.Random(seed)
    ids = [rnd.randrange(vocab_size) for _ in range(tokens)]
    return (ids,) + tuple(transformers_outputs(model_dir, ids, dtype=torch.float32))


def fresh_dir(path):
    """`path` as an empty directory."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def write_golden(d, ids, logits, greedy, reference, **fields):
    """logits.f32 (float32, little-endian, [T, vocab]) and golden.json in `d`: ids, greedy, shape, then `fields` in
    the order given, then `reference` (the versions that computed it)."""
    logits.numpy().astype("<f4").tofile(os.path.join(d, "logits.f32"))
    json.dump(dict({"ids": ids, "greedy": greedy, "shape": list(logits.shape)}, **fields, reference=reference),
              open(os.path.join(d, "golden.json"), "w"), indent=1)


def top2_margin(logits):
    """The smallest gap between a position's two largest logits."""
    top2 = logits.topk(2, dim=-1).values
    return float((top2[:, 0] - top2[:, 1]).min())
