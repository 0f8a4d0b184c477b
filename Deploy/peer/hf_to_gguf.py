#!/usr/bin/env python3
"""Write a Mixtral-style Hugging Face checkpoint (as `moe-serve synth` makes) as a GGUF file for llama.cpp.

Only for the side-by-side benchmark (Deploy/peer/llama_cpp_bench.py, which sets GGUF_PY): the same weights, so that llama-bench reads
the same bytes per token as moe-bench. Uses the `gguf` package from llama.cpp's own source tree (GGUF_PY) and numpy;
no torch. Tensor names, the q/k row permutation (Hugging Face's rotate-half layout -> llama.cpp's interleaved rope)
and the stacking of experts into one [experts, rows, cols] tensor per projection follow llama.cpp's converter for
MixtralForCausalLM. A byte-level BPE tokenizer (GPT-2's pattern) is written as llama.cpp's gpt2 vocabulary with its
merges; any other as a plain SentencePiece-style list (the tokens, padded to vocab_size), enough for llama-bench, which
feeds token ids and never tokenizes text.

usage: hf_to_gguf.py MODEL_DIR OUT.gguf {f32,f16}
"""
import json
import os
import struct
import sys

import numpy as np

if "GGUF_PY" not in os.environ:
    sys.exit("GGUF_PY: set it to the gguf-py directory of a llama.cpp source tree (llama_cpp_bench.py does)")
sys.path.insert(0, os.environ["GGUF_PY"])
import gguf  # noqa: E402


class Lazy:
    """One tensor of a safetensors file, read (and widened to float32) only when `load` is called: a checkpoint of
    billions of values never sits in memory whole (a 3 B bf16 one held as f32 took 24 GB and was killed)."""

    def __init__(self, data, start, end, dtype, shape, name):
        self.data, self.start, self.end, self.dtype, self.shape, self.name = data, start, end, dtype, tuple(shape), name

    def load(self):
        raw = self.data[self.start:self.end]
        if self.dtype == "F32":
            a = np.array(raw.view(np.float32))
        elif self.dtype == "F16":
            a = raw.view(np.float16).astype(np.float32)
        elif self.dtype == "BF16":
            a = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            sys.exit(f"{self.name}: dtype {self.dtype} is not supported (f32, f16 or bf16)")
        return a.reshape(self.shape)


def read_safetensors(path):
    """name -> Lazy, for every tensor of the file (f32, f16 or bf16 on disk)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    return {name: Lazy(data, *info["data_offsets"], info["dtype"], info["shape"], name)
            for name, info in header.items() if name != "__metadata__"}


def permute(w, n_head):
    """Rows of q_proj/k_proj from rotate-half pairs (i, i + d/2) to adjacent pairs (2i, 2i + 1), per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def bytelevel(tok):
    """Whether the tokenizer is a byte-level BPE splitting words by GPT-2's pattern (ByteLevel with use_regex)."""
    pre = tok.get("pre_tokenizer") or {}
    return tok["model"].get("type") == "BPE" and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("f32", "f16"):
        sys.exit(__doc__)
    model_dir, out_path, ftype = sys.argv[1:]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    if cfg.get("model_type") != "mixtral":
        sys.exit(f"model_type {cfg.get('model_type')!r}: only mixtral checkpoints are converted")
    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    t = {}
    for f in files:
        t.update(read_safetensors(os.path.join(model_dir, f)))

    hidden, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or hidden // heads
    experts, vocab = cfg["num_local_experts"], cfg["vocab_size"]
    mat = np.float16 if ftype == "f16" else np.float32

    w = gguf.GGUFWriter(out_path, "llama")
    w.add_name(os.path.basename(os.path.normpath(model_dir)))
    w.add_context_length(cfg.get("max_position_embeddings", 4096))
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_expert_count(experts)
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if ftype == "f16" else gguf.LlamaFileType.ALL_F32)

    tok = json.load(open(os.path.join(model_dir, "tokenizer.json")))
    names = {i: s for s, i in tok["model"]["vocab"].items()}
    added = {a["id"]: a for a in tok.get("added_tokens", [])}
    names.update({i: a["content"] for i, a in added.items()})
    tokens, types = [], []
    for i in range(vocab):
        tokens.append(names.get(i, f"<unused{i}>"))
        # As llama.cpp's converter types them: special added tokens are control tokens, the others user-defined.
        types.append(gguf.TokenType.NORMAL if i not in added
                     else gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
    if bytelevel(tok):
        # A GPT-2-style byte-level BPE (GPT-2's split pattern): written with its merges, so that llama.cpp
        # tokenizes text as the tokenizer.json does (its /infill test reads text).
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")
        w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]])
        w.add_add_bos_token(False)
    else:
        w.add_tokenizer_model("llama")
        w.add_token_scores([0.0] * vocab)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_bos_token_id(cfg.get("bos_token_id", 1))
    w.add_eos_token_id(cfg.get("eos_token_id", 2))

    # Tensors are declared first (name, shape, type) and written one at a time after the header, each made from the
    # checkpoint only then.
    plan = []

    def put(name, shape, make, as_matrix=True):
        # Norms and the router stay f32, as llama.cpp's converter keeps 1-d and small tensors.
        dtype = np.dtype(mat if as_matrix else np.float32)
        plan.append((make, dtype))
        w.add_tensor_info(name, shape, dtype, int(np.prod(shape)) * dtype.itemsize)

    def plain(gname, name, as_matrix=True, rows=None):
        src = t[name]
        make = (lambda: permute(src.load(), rows)) if rows else src.load
        put(gname, src.shape, make, as_matrix)

    plain("token_embd.weight", "model.embed_tokens.weight")
    for i in range(layers):
        p = f"model.layers.{i}."
        plain(f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight", False)
        plain(f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight", rows=heads)
        plain(f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight", rows=kv_heads)
        plain(f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight")
        plain(f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight")
        plain(f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight", False)
        plain(f"blk.{i}.ffn_gate_inp.weight", p + "block_sparse_moe.gate.weight", False)
        for proj, gg in (("w1", "ffn_gate_exps"), ("w2", "ffn_down_exps"), ("w3", "ffn_up_exps")):
            parts = [t[f"{p}block_sparse_moe.experts.{e}.{proj}.weight"] for e in range(experts)]
            put(f"blk.{i}.{gg}.weight", (experts, *parts[0].shape), lambda parts=parts: np.stack([x.load() for x in parts]))
    plain("output_norm.weight", "model.norm.weight", False)
    plain("output.weight", "lm_head.weight" if "lm_head.weight" in t else "model.embed_tokens.weight")

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for make, dtype in plan:
        w.write_tensor_data(np.ascontiguousarray(make().astype(dtype)))
    w.close()
    print(f"wrote {out_path} ({ftype})")


if __name__ == "__main__":
    main()
