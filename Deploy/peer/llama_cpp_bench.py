#!/usr/bin/env python3
"""moe-bench beside llama.cpp's llama-bench on the same checkpoint, interleaved, with the read bandwidth sampled
around every run: the same weights, the same two threads, the same minutes of this machine's moving bandwidth.

    python3 Deploy/peer/llama_cpp_bench.py --model /tmp/bench-model [--formats f32,f16,int8,int4] [--rounds 3]

First run: fetches llama.cpp's source as vendored in the llama-cpp-python sdist from PyPI (pinned; no model hub),
installs cmake and numpy with pip if missing, builds llama-bench and llama-quantize (GGML_NATIVE, ~4 min on two
cores) and writes the checkpoint as GGUF (f32 and f16 by hf_to_gguf.py; q8_0 and q4_0 by llama-quantize from f32,
with llama-quantize's own choices for the output and attention tensors). All of it is cached in --work, the
GGUF files by the checkpoint's path and the modification times of its files.

Per round and format: `moe-bench model --format F --json` (prefill 512; decode at batch 1 after 16 prompt tokens,
best of three rounds of 32 steps, each round between two bandwidth samples), then `llama-bench -t 2 -p 512 -n 128
-r 3` between two bandwidth samples. Both report their best repetition. Every run goes to stderr as it ends; the
table gives each side's median ratio to its roofline and the rounds in which both met about the same bandwidth.
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import urllib.request

LLAMA_CPP_PYTHON = "0.3.36"  # its sdist vendors llama.cpp's source
SDIST = f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
GGUF_TYPE = {"f32": "f32", "f16": "f16", "int8": "q8_0", "int4": "q4_0"}
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, **kw)
    if r.returncode != 0:
        detail = (r.stderr or "").strip().splitlines()[-5:] if kw.get("capture_output") else []
        sys.exit(f"{os.path.basename(cmd[0])} exited with {r.returncode}" + "".join(f"\n  {l}" for l in detail))
    return r


def fetch_source(work):
    src = os.path.join(work, f"llama_cpp_python-{LLAMA_CPP_PYTHON}", "vendor", "llama.cpp")
    if os.path.isdir(src):
        return src
    index = urllib.request.urlopen("https://pypi.org/simple/llama-cpp-python/", timeout=60).read().decode()
    url = next((part.split('"')[0].split("#")[0] for part in index.split('href="') if SDIST in part.split('"')[0]), None)
    if url is None:
        sys.exit(f"{SDIST} not found on PyPI")
    tgz = os.path.join(work, SDIST)
    print(f"fetching {url}", file=sys.stderr)
    urllib.request.urlretrieve(url, tgz)
    with tarfile.open(tgz) as t:
        t.extractall(work)
    return src


def build(src, work):
    bench, quantize = (os.path.join(work, "build", "bin", b) for b in ("llama-bench", "llama-quantize"))
    if os.path.exists(bench) and os.path.exists(quantize):
        return bench, quantize
    if shutil.which("cmake") is None:
        run([sys.executable, "-m", "pip", "install", "-q", "cmake"])
    run(["cmake", "-S", src, "-B", os.path.join(work, "build"), "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
         "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF"])
    run(["cmake", "--build", os.path.join(work, "build"), "--target", "llama-bench", "llama-quantize",
         "-j", str(os.cpu_count() or 2)])
    return bench, quantize


def ggufs(model, src, quantize, work, formats):
    try:
        import numpy  # noqa: F401
    except ImportError:
        run([sys.executable, "-m", "pip", "install", "-q", "numpy"])
    env = dict(os.environ, GGUF_PY=os.path.join(src, "gguf-py"))
    # A regenerated checkpoint (same directory, new weights) must not reuse the old files.
    model = os.path.abspath(model)
    stamp = hashlib.sha1(repr((model, sorted((f, os.path.getmtime(os.path.join(model, f)))
                                                for f in os.listdir(model)))).encode()).hexdigest()[:10]
    path = lambda t: os.path.join(work, f"{os.path.basename(model)}-{stamp}-{t}.gguf")

    def make(t):
        if os.path.exists(path(t)):
            return
        if t in ("f32", "f16"):
            run([sys.executable, os.path.join(HERE, "hf_to_gguf.py"), model, path(t), t], env=env)
        else:
            make("f32")
            run([quantize, path("f32"), path(t), t.upper()], stdout=subprocess.DEVNULL)

    for f in formats:
        make(GGUF_TYPE[f])
    return {f: path(GGUF_TYPE[f]) for f in formats}


def bandwidth(moe_bench):
    r = run([moe_bench, "bandwidth", "--read-only", "--json"], capture_output=True, text=True)
    return json.loads(r.stdout)["bandwidth_gb_s"]


def ours(moe_bench, model, f):
    r = run([moe_bench, "model", "--model", model, "--format", f, "--json"], capture_output=True, text=True)
    o = json.loads(r.stdout.strip().splitlines()[-1])
    return {"decode": o["decode_tok_s"], "prefill": o["prefill_tok_s"], "bandwidth": o["bandwidth_gb_s"],
            "bytes": o["bytes_per_token"], "ratio": o["roofline_ratio"]}


def theirs(moe_bench, llama_bench, gguf, threads):
    before = bandwidth(moe_bench)
    r = run([llama_bench, "-m", gguf, "-t", str(threads), "-p", "512", "-n", "128", "-r", "3", "-o", "json"],
            capture_output=True, text=True)
    after = bandwidth(moe_bench)
    rows = json.loads(r.stdout)
    best = lambda kind: max(max(x["samples_ts"]) for x in rows if (x["n_gen"] > 0) == (kind == "decode"))
    return {"decode": best("decode"), "prefill": best("prefill"), "bandwidth": max(before, after)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="Mixtral-style checkpoint directory (moe-serve synth makes one)")
    p.add_argument("--formats", default="f32,f16,int8,int4")
    p.add_argument("--rounds", type=int, default=3, help="0: only build llama.cpp and write the GGUF files")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/llama-cpp-peer", help="cache for llama.cpp's source, build and GGUF files")
    p.add_argument("--moe-bench", default=os.path.join(ROOT, ".build", "release", "moe-bench"))
    a = p.parse_args()
    formats = a.formats.split(",")
    for f in formats:
        if f not in GGUF_TYPE:
            sys.exit(f"--formats: {f!r} is not one of {', '.join(GGUF_TYPE)}")
    if not os.path.isfile(os.path.join(a.model, "config.json")):
        sys.exit(f"--model {a.model}: no config.json there (make one with `moe-serve synth`, see README)")
    if not os.access(a.moe_bench, os.X_OK):
        sys.exit(f"{a.moe_bench} not found: run `swift build -c release` first")
    os.makedirs(a.work, exist_ok=True)
    src = fetch_source(a.work)
    llama_bench, quantize = build(src, a.work)
    files = ggufs(a.model, src, quantize, a.work, formats)
    if a.rounds < 1:
        print(f"built {llama_bench}; GGUF files: {', '.join(files.values())}")
        return

    results = {f: [] for f in formats}
    for r in range(a.rounds):
        for f in formats:
            o, t = ours(a.moe_bench, a.model, f), theirs(a.moe_bench, llama_bench, files[f], a.threads)
            results[f].append((o, t))
            print(f"round {r + 1} {f}: ours {o['decode']:.1f} tok/s at {o['bandwidth']:.1f} GB/s, llama.cpp "
                  f"{t['decode']:.1f} tok/s at {t['bandwidth']:.1f} GB/s", file=sys.stderr, flush=True)

    # This VM's read bandwidth moves between ~35 and ~65 GB/s from minute to minute, so a decode rate means little
    # without the bandwidth it ran at. Per format: each side's median ratio to its own roofline (read bandwidth ÷ bytes
    # per token) over the rounds, and the rounds in which both ran at bandwidths within 10% of each other.
    print(f"moe-bench beside llama.cpp (llama-cpp-python {LLAMA_CPP_PYTHON}'s llama.cpp, GGML_NATIVE), "
          f"{a.threads} threads, {a.rounds} interleaved rounds, model {a.model}")
    print("| format | prefill 512, best: ours / llama.cpp (tok/s) | decode ÷ roofline, median: ours / llama.cpp | "
          "rounds at matched bandwidth: ours / llama.cpp (tok/s at GB/s) |")
    print("| --- | --- | --- | --- |")
    for f in formats:
        rs = results[f]
        po, pt = max(x[0]["prefill"] for x in rs), max(x[1]["prefill"] for x in rs)
        # llama.cpp's roofline with our bytes per token: the same weights in f32 and f16; q8_0 and q4_0 hold a
        # few percent more or fewer bytes than our int8/int4 (its scale layout and llama-quantize's choices).
        ro = statistics.median(x[0]["ratio"] for x in rs)
        rt = statistics.median(x[1]["decode"] * x[0]["bytes"] / (x[1]["bandwidth"] * 1e9) for x in rs)
        matched = [f"{o['decode']:.1f} / {t['decode']:.1f} at {o['bandwidth']:.0f}" for o, t in rs
                   if abs(o["bandwidth"] / t["bandwidth"] - 1) <= 0.1]
        print(f"| {f} | {po:.0f} / {pt:.0f} | {ro:.2f} / {rt:.2f}{'' if f in ('f32', 'f16') else ' (approx.)'} | "
              f"{'; '.join(matched) or 'none'} |")


if __name__ == "__main__":
    main()
